"""The node process: a WebSocket listener feeding one :class:`Session` per connection.

Owns the store and executor shared by all connections, the TLS identity,
the users directory (whose revocations it enforces on live connections),
and the lifetime of every connection task.  It is the one core module that
wires the subrooms in: it builds the secret-sharing service
(:mod:`node.server.mpc`) with the material providers this node deals from
as a crypto provider (:class:`node.mpc.Providers`), and the federated
services (:mod:`node.server.fl`).  Heavy commands run in worker
threads via ``asyncio.to_thread`` so the loop keeps serving heartbeats and
other clients.  Objects of a principal with no live connection are freed
after ``orphan_ttl`` seconds (a reconnect within that window finds them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import torch

from protocol.codec import Frame, encode_message
from protocol.errors import MessageTooLarge, QuotaExceeded, TesseraError
from protocol.messages import ErrorReply, Reply
from protocol.records import NodeRecord, Role

from node.mpc import Providers
from ..settings import NodeSettings
from peer.client.endpoint import Credentials, Endpoint
from peer.security.identity import Identity, ensure_identity
from peer.security.proof import node_credentials
from peer.security.tokens import network_key
from peer.transport.tls import server_ssl_context
from peer.security.trust import TrustPolicy
from peer.transport.websocket import Connection, Listener, listen, listening_url
from peer.server.auth import AnonymousAuthenticator, Authenticator, CredentialAuthenticator
from .users import USER_PREFIX, UserDirectory, UsersFileError
from .executor import Executor
from .driver import ConnectionDriver
from node.server.fl.owner import OwnerDatasets
from .session import Session
from .registration import GatewayRegistration
from .store import MemoryStore, Principal, Quota
from node.server.fl.trainer import TrainerJobs
from .transfers import TransferService
from node.server.mpc.service import MpcService, default_providers
from node.server.fl.secagg import SecureAggregation

__all__ = ["NodeServer"]

log = logging.getLogger("tessera.node")

REVOCATION_CHECK_INTERVAL = 1.0
"""Seconds between checks of the users file for revoked users."""


class NodeServer:
    """A running node.  ``await start()``, then ``await close()``."""

    def __init__(
        self,
        settings: NodeSettings,
        authenticator: Authenticator | None = None,
        providers: Providers | None = None,
    ) -> None:
        """``providers``: the material this node deals as a crypto provider, one provider per
        kind (default: the Beaver :class:`~node.mpc.Dealer` and the comparisons' dealers)."""
        self.settings = settings
        self.providers = providers if providers is not None else default_providers()
        self.store = MemoryStore(Quota(settings.max_objects, settings.max_bytes))
        self.executor = Executor(settings.node_id, self.store)
        self._authenticator = authenticator
        self.authenticator: Authenticator = authenticator or AnonymousAuthenticator()
        self.identity: Identity | None = None
        self.transfers: TransferService | None = None
        self.mpc: MpcService | None = None
        self.registration: GatewayRegistration | None = None
        self._listener: Listener | None = None
        self._live: dict[Principal, int] = {}
        self._expiry: dict[Principal, asyncio.TimerHandle] = {}
        self.users = UserDirectory(settings.state_dir)
        self._network = network_key(settings.network_token) if settings.network_token else None
        self._drivers: set[ConnectionDriver] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.datasets = OwnerDatasets(self.store, settings.state_dir)
        self.jobs: TrainerJobs | None = None
        self.secagg: SecureAggregation | None = None

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("node is not started")
        return self._listener.port

    @property
    def url(self) -> str:
        return listening_url(self.settings.host, self.port, self.settings.insecure)

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the certificate clients see (None for --insecure nodes)."""
        if self.identity is None or self.settings.insecure:
            return None
        return self.identity.fingerprint

    async def start(self) -> None:
        """Load or create the identity, bind, and register at the gateway if configured.

        Raises StateDirError (unusable state dir), DatasetError (a ``--dataset``
        file missing or malformed; loaded before listening) or OSError (cannot bind).
        Insecure nodes have an identity too: they prove it to the gateway
        and to peers, they just do not serve TLS.
        """
        settings = self.settings
        torch.set_num_threads(settings.torch_threads)
        identity = await asyncio.to_thread(
            ensure_identity, settings.state_dir, settings.node_id, self._cert_names()
        )
        self.identity = identity
        ssl_context = None if settings.insecure else server_ssl_context(identity)
        await asyncio.to_thread(self.users.names)  # an unreadable users file fails the start
        self.authenticator = self._authenticator or CredentialAuthenticator(
            None if settings.insecure else identity.fingerprint,
            network=self._network,
            users=self.users,
            anonymous=settings.allow_anonymous,
        )
        credentials = self._node_credentials(identity)
        self.transfers = TransferService(
            settings.node_id, self.store, credentials, settings.max_message_bytes,
            network=self._network, fingerprint=None if settings.insecure else identity.fingerprint,
        )
        self.mpc = MpcService(
            settings.node_id, self.store, self.transfers, self.providers, settings.trusted_providers
        )
        self.secagg = SecureAggregation(settings.node_id, identity.fingerprint, self.transfers, self.datasets.pending)
        await asyncio.to_thread(self.datasets.load, settings.datasets, settings.tags)
        self.jobs = TrainerJobs(settings.node_id, settings.roles, self.transfers, self.store)
        self._listener = await listen(
            self._serve, settings.host, settings.port, ssl_context, settings.max_message_bytes
        )
        if settings.gateway_url is not None:
            self.registration = GatewayRegistration(
                self._gateway_endpoint(credentials), self.record(), refresh=self.record
            )
            self.registration.start()
        self._watcher = asyncio.get_running_loop().create_task(self._watch_users())

    def _cert_names(self) -> tuple[str, ...]:
        names = [self.settings.host]
        if self.settings.advertise is not None:
            host = urlsplit(self.settings.advertise).hostname
            if host:
                names.append(host)
        return tuple(names)

    def _node_credentials(self, identity: Identity) -> Credentials:
        node_id = self.settings.node_id
        network = self._network

        def credentials(peer_fingerprint: str | None) -> dict[str, Any]:
            return node_credentials(identity, node_id, peer_fingerprint, network=network)

        return credentials

    def _gateway_endpoint(self, credentials: Credentials) -> Endpoint:
        settings = self.settings
        assert settings.gateway_url is not None
        trust = TrustPolicy(
            cafile=settings.gateway_cafile,
            fingerprint=settings.gateway_fingerprint,
            known_nodes=settings.state_dir / "known_gateways.json",
        )
        return Endpoint(settings.gateway_url, trust, settings.node_id, credentials, roles=("node",))

    def record(self) -> NodeRecord:
        """What this node registers at the gateway."""
        assert self.identity is not None
        settings = self.settings
        return NodeRecord(
            settings.node_id,
            settings.advertise or self.url,
            self.identity.fingerprint,
            tuple(Role(role) for role in settings.roles),
            settings.tags,
            self.datasets.summaries(),
        )

    async def close(self) -> None:
        """Deregister, stop listening and close every connection (code 1001)."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self.registration is not None:
            await self.registration.stop()
        if self.jobs is not None:
            await self.jobs.close()
        if self.transfers is not None:
            await self.transfers.close()
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
            transfers=self.transfers,
            services=(
                self.datasets,
                *((self.jobs,) if self.jobs is not None else ()),
                *((self.mpc,) if self.mpc is not None else ()),
                *((self.secagg,) if self.secagg is not None else ()),
            ),
        )

    async def _serve(self, connection: Connection) -> None:
        session = self._session(connection)
        driver = ConnectionDriver(connection, session, self._encode_reply, self._connected)
        connection.attach(driver)
        self._drivers.add(driver)
        try:
            await driver.wait()
        finally:
            self._drivers.discard(driver)
            session.close()
            if driver.admitted and session.principal is not None:
                self._disconnected(session.principal)

    async def _watch_users(self) -> None:
        """Close the connections of users the operator revoked while they were connected."""
        while True:
            await asyncio.sleep(REVOCATION_CHECK_INTERVAL)
            try:
                names = await asyncio.to_thread(self.users.names)
            except UsersFileError as exc:
                log.error("%s; keeping the users loaded before", exc)
                continue
            for driver in list(self._drivers):
                principal = driver.session.principal
                if (
                    principal is not None
                    and principal.startswith(USER_PREFIX)
                    and principal[len(USER_PREFIX):] not in names
                ):
                    log.info("closing a connection of %s: its token was revoked", principal)
                    driver.revoke("credentials revoked")

    def _encode_reply(self, reply: Reply) -> Frame:
        """Encode a reply; one the peer would refuse for its size becomes TOO_LARGE."""
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
        """Count a new connection of ``principal``; QuotaExceeded (the hello is refused) past the cap."""
        live, cap = self._live.get(principal, 0), self.settings.max_connections
        if live >= cap:
            raise QuotaExceeded(
                f"at most {cap} connections per principal on this node ({live} open)",
                {"limit": cap, "held": live},
            )
        self._live[principal] = live + 1
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
