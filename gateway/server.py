"""The gateway process: WebSocket sessions, the status page, and the sweep task.

Owns the :class:`~gateway.registry.Registry` (exposed as
:attr:`GatewayServer.registry`), the TLS identity, the id bindings file, the
per-source flood limiter and the periodic sweep that marks silent nodes
offline and drops old entries.  One port serves both the WebSocket protocol
and plain HTTP GET of ``/`` (the status page) and ``/nodes.json``.  Protocol
work is small and done inline on the event loop; file I/O (loading the
identity, reading and writing ``bindings.json``) goes through a thread.

Bindings (issue 11, item 5): a registration that binds a new id is saved to
the file *before* its reply goes out, so an id a node was told it holds
survives a crash.  The operator's edits (``python -m gateway bindings``) are
adopted at each sweep and at once after a request refused for a binding, so
the refused node's next retry already sees them.

The transport, authenticator and conversation ``Outcome`` come from the
shared peer layer (``peer/``), which nodes use too; the gateway imports
nothing of ``node/``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable
from urllib.parse import urlsplit

from peer.server.auth import CredentialAuthenticator
from peer.server.conversation import Outcome
from peer.security.identity import Identity, StateDirError, ensure_identity
from peer.security.tokens import network_key
from peer.transport.tls import server_ssl_context
from peer.transport.websocket import (
    CloseCode,
    Connection,
    ConnectionLost,
    Listener,
    TextFrameReceived,
    listen,
    listening_url,
)
from protocol.codec import encode_message
from protocol.ids import NodeId
from protocol.records import NodeStatus

from .bindings import BindingFile, Bindings
from .flood import FLOOD_WINDOW, RateLimiter
from .registry import Registry
from .session import GatewaySession
from .settings import GatewaySettings
from .status import nodes_json, render_status_page

__all__ = ["GatewayServer"]

log = logging.getLogger("tessera.gateway")

_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


class GatewayServer:
    """A running gateway.  ``await start()``, then ``await close()``."""

    def __init__(self, settings: GatewaySettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = Registry(settings.registry_policy())
        self.binding_file = BindingFile(settings.state_dir)
        self._bindings_lock = asyncio.Lock()
        self.identity: Identity | None = None
        self._authenticator: CredentialAuthenticator | None = None
        self._source_limiter = RateLimiter(settings.registrations_per_source, FLOOD_WINDOW)
        self._owners: dict[NodeId, GatewaySession] = {}
        self._listener: Listener | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("gateway is not started")
        return self._listener.port

    @property
    def url(self) -> str:
        return listening_url(self.settings.host, self.port, self.settings.insecure)

    @property
    def fingerprint(self) -> str | None:
        return self.identity.fingerprint if self.identity is not None else None

    def nodes(self, tag: str | None = None) -> tuple[NodeStatus, ...]:
        """The registry's statuses now (all, or those carrying ``tag``)."""
        return self.registry.nodes(tag, self.clock())

    async def start(self) -> None:
        """Load the id bindings, load or create the TLS identity, bind, start sweeping.

        Raises StateDirError (a bindings file that cannot be read or parsed,
        an unusable identity) or OSError (the port).
        """
        self.registry.load_bindings(await asyncio.to_thread(self.binding_file.load))
        ssl_context = None
        if not self.settings.insecure:
            self.identity = await asyncio.to_thread(
                ensure_identity, self.settings.state_dir, "tessera-gateway", (self.settings.host,)
            )
            ssl_context = server_ssl_context(self.identity)
        token = self.settings.network_token
        self._authenticator = CredentialAuthenticator(
            self.fingerprint,
            network=network_key(token) if token else None,
            open_network=self.settings.open_network,
            anonymous=True,  # reading the directory is open; registering needs membership
        )
        self._listener = await listen(
            self._serve,
            self.settings.host,
            self.settings.port,
            ssl_context,
            self.settings.max_message_bytes,
            http=self._http,
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="gateway-sweep")

    async def close(self) -> None:
        """Stop sweeping and listening, close every connection (code 1001)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            # The sweeper's CancelledError comes back as a result; ours still propagates.
            await asyncio.gather(sweeper, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
        await self.sync_bindings()  # a save that failed earlier gets a last try

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                self.sweep()
                await self.sync_bindings(reread=True)
            except Exception:  # a bug in one sweep must not stop the next ones
                log.exception("sweep failed")

    async def sync_bindings(self, reread: bool = False) -> None:
        """Save the bindings the registry made; with ``reread``, adopt the operator's edits.

        A file that cannot be written or read is logged, not fatal: the
        bindings stay in force in memory and the next sweep tries again.
        """
        async with self._bindings_lock:
            file, unsaved = self.binding_file, self.registry.unsaved_bindings()
            try:
                if unsaved:
                    table = await asyncio.to_thread(file.add, unsaved)
                elif reread and await asyncio.to_thread(file.changed):
                    table = await asyncio.to_thread(file.load)
                    log.info("%s changed; adopted its %d bindings", file.path, len(table))
                else:
                    return
            except StateDirError as exc:
                log.error("id bindings: %s (kept in memory; retrying at the next sweep)", exc)
                return
            self._adopt(table)

    def _adopt(self, table: Bindings) -> None:
        for node_id in self.registry.load_bindings(table):
            # The connection that spoke for it learns at its next heartbeat.
            self._owners.pop(node_id, None)
            log.warning("%s: its id binding was changed by the operator; entry dropped", node_id)

    def sweep(self) -> None:
        """One sweep now: silent nodes go offline, old offline entries are dropped."""
        result = self.registry.sweep(self.clock())
        for node_id in result.went_offline:
            log.info("%s missed its heartbeats; marked offline", node_id)
        for node_id in result.dropped:
            log.info("%s was offline for %.0f s; dropped", node_id, self.settings.drop_after)
        for node_id in [n for n in self._owners if n not in self.registry]:
            del self._owners[node_id]

    def _http(self, target: str) -> tuple[int, str, bytes] | None:
        path = urlsplit(target).path
        if path in ("/", "/index.html"):
            now = self.clock()
            page = render_status_page(self.registry.nodes(None, now), now)
            return 200, _HTML, page.encode()
        if path == "/nodes.json":
            now = self.clock()
            return 200, _JSON, nodes_json(self.registry.nodes(None, now), now)
        return 404, _TEXT, b"not found: the gateway serves / and /nodes.json\n"

    def _session(self, connection: Connection) -> GatewaySession:
        assert self._authenticator is not None
        peer = connection.remote_address
        return GatewaySession(
            self.registry,
            self._authenticator,
            self.clock,
            source_limiter=self._source_limiter,
            connection_limit=self.settings.registrations_per_connection,
            max_message_bytes=self.settings.max_message_bytes,
            peer=peer,
            source=peer.rsplit(":", 1)[0],
        )

    async def _serve(self, connection: Connection) -> None:
        session = self._session(connection)
        try:
            await self._converse(connection, session)
        finally:
            session.close()
            self._disconnected(session)

    async def _converse(self, connection: Connection, session: GatewaySession) -> None:
        while True:
            try:
                frame = await connection.recv()
            except ConnectionLost:
                return
            except TextFrameReceived:
                log.info("text frame from %s; closing", connection.remote_address)
                await connection.close(CloseCode.UNSUPPORTED_DATA, "binary frames only")
                return
            claims = session.claims
            made, refused = self.registry.bindings_made, self.registry.binding_refusals
            outcome = session.receive(frame)
            if session.claims != claims and session.registered is not None:
                self._owners[session.registered] = session
            refused_now = self.registry.binding_refusals != refused
            if self.registry.bindings_made != made or refused_now:
                # Before the reply: a node told it holds an id holds it on disk too.
                await self.sync_bindings(reread=refused_now)
            if not await self._deliver(connection, outcome):
                return

    async def _deliver(self, connection: Connection, outcome: Outcome) -> bool:
        """Send the outcome's reply; False once the connection is done."""
        try:
            if outcome.reply is not None:
                await connection.send(encode_message(outcome.reply))
            if outcome.close_code is not None:
                await connection.close(outcome.close_code, outcome.close_reason)
                return False
        except ConnectionLost:
            return False
        return True

    def _disconnected(self, session: GatewaySession) -> None:
        """Mark the node offline at once, unless a newer connection speaks for it."""
        node_id = session.registered
        if node_id is None or self._owners.get(node_id) is not session:
            return
        del self._owners[node_id]
        caller = session.caller
        if caller is not None and caller.fingerprint is not None:
            if self.registry.disconnected(node_id, caller.fingerprint, self.clock()):
                log.info("%s disconnected; marked offline", node_id)
