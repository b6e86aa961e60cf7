"""The node process: a WebSocket listener feeding one :class:`Session` per connection.

Owns the store and executor shared by all connections, the TLS identity,
and the lifetime of every connection task.  Heavy commands run in worker
threads via ``asyncio.to_thread`` so the loop keeps serving heartbeats and
other clients.  Objects of a principal with no live connection are freed
after ``orphan_ttl`` seconds (a reconnect within that window finds them).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from protocol.codec import Frame, encode_message
from protocol.errors import MessageTooLarge, TesseraError
from protocol.messages import ErrorReply

from ..settings import NodeSettings
from ..transport.identity import Identity, ensure_identity
from ..transport.tls import server_ssl_context
from ..transport.websocket import (
    CloseCode,
    Connection,
    ConnectionLost,
    Listener,
    TextFrameReceived,
    listen,
)
from .auth import AnonymousAuthenticator, Authenticator
from .executor import Executor
from .session import Outcome, Session, Work
from .store import MemoryStore, Principal

__all__ = ["NodeServer"]

log = logging.getLogger("tessera.node")


class NodeServer:
    """A running node.  ``await start()``, then ``await close()``."""

    def __init__(self, settings: NodeSettings, authenticator: Authenticator | None = None) -> None:
        self.settings = settings
        self.store = MemoryStore()
        self.executor = Executor(settings.node_id, self.store)
        self.authenticator = authenticator or AnonymousAuthenticator()
        self.identity: Identity | None = None
        self._listener: Listener | None = None
        self._live: dict[Principal, int] = {}
        self._expiry: dict[Principal, asyncio.TimerHandle] = {}

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("node is not started")
        return self._listener.port

    @property
    def url(self) -> str:
        scheme = "ws" if self.settings.insecure else "wss"
        host = self.settings.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def fingerprint(self) -> str | None:
        return self.identity.fingerprint if self.identity is not None else None

    async def start(self) -> None:
        """Load or create the TLS identity and bind; raises StateDirError or OSError."""
        ssl_context = None
        if not self.settings.insecure:
            self.identity = await asyncio.to_thread(
                ensure_identity,
                self.settings.state_dir,
                self.settings.node_id,
                (self.settings.host,),
            )
            ssl_context = server_ssl_context(self.identity)
        self._listener = await listen(
            self._serve,
            self.settings.host,
            self.settings.port,
            ssl_context,
            self.settings.max_message_bytes,
        )

    async def close(self) -> None:
        """Stop listening and close every connection (code 1001)."""
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()

    def _session(self, connection: Connection) -> Session:
        return Session(
            self.settings.node_id,
            self.settings.roles,
            self.executor,
            self.store,
            self.authenticator,
            self.settings.max_message_bytes,
            peer=connection.remote_address,
        )

    async def _serve(self, connection: Connection) -> None:
        session = self._session(connection)
        try:
            await self._converse(connection, session)
        finally:
            session.close()
            if session.principal is not None:
                self._disconnected(session.principal)

    async def _converse(self, connection: Connection, session: Session) -> None:
        while True:
            try:
                frame = await connection.recv()
            except ConnectionLost:
                return
            except TextFrameReceived:
                log.info("text frame from %s; closing", connection.remote_address)
                await connection.close(CloseCode.UNSUPPORTED_DATA, "binary frames only")
                return
            was_open = session.principal is not None
            step = session.receive(frame)
            outcome = await asyncio.to_thread(step.run) if isinstance(step, Work) else step
            if not was_open and session.principal is not None:
                self._connected(session.principal)
            if not await self._deliver(connection, outcome):
                return

    async def _deliver(self, connection: Connection, outcome: Outcome) -> bool:
        """Send the outcome's reply; False once the connection is done."""
        try:
            if outcome.reply is not None:
                await connection.send(self._encode_reply(outcome))
            if outcome.close_code is not None:
                await connection.close(outcome.close_code, outcome.close_reason)
                return False
        except ConnectionLost:
            return False
        return True

    def _encode_reply(self, outcome: Outcome) -> Frame:
        """Encode a reply; one the peer would refuse for its size becomes TOO_LARGE."""
        reply = outcome.reply
        assert reply is not None
        limit = self.settings.max_message_bytes
        try:
            frame = encode_message(reply)
            if frame.nbytes > limit:
                raise MessageTooLarge.for_size(f"{reply.KIND.value} reply", frame.nbytes, limit)
        except TesseraError as exc:
            log.info("cannot send %s: %s", reply.KIND.value, exc)
            return encode_message(ErrorReply.from_exception(reply.id, exc))
        return frame

    def _connected(self, principal: Principal) -> None:
        self._live[principal] = self._live.get(principal, 0) + 1
        handle = self._expiry.pop(principal, None)
        if handle is not None:
            handle.cancel()

    def _disconnected(self, principal: Principal) -> None:
        remaining = self._live.get(principal, 1) - 1
        if remaining > 0:
            self._live[principal] = remaining
            return
        self._live.pop(principal, None)
        loop = asyncio.get_running_loop()
        self._expiry[principal] = loop.call_later(
            self.settings.orphan_ttl, self._expire, principal
        )

    def _expire(self, principal: Principal) -> None:
        self._expiry.pop(principal, None)
        if principal not in self._live:
            dropped = self.store.drop_principal(principal)
            if dropped:
                log.info("freed %d objects of %s (no connection for a while)", dropped, principal)
