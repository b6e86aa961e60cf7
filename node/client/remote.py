"""``node.connect``: a synchronous handle on a node across the network."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES

from peer.client.credentials import client_credentials
from peer.client.endpoint import Endpoint
from peer.client.sync_channel import SyncChannel
from peer.security.trust import TrustPolicy

from .handle import NodeHandle

if TYPE_CHECKING:
    from ..fl.fedavg import FedAvg
    from node.client.fl.jobs import HandleParty, RemoteJob

__all__ = ["RemoteNode", "connect", "endpoint_for"]


class RemoteNode(NodeHandle):
    """A node reached over a WebSocket; see :func:`connect`."""

    def fit(self, job: FedAvg) -> RemoteJob:
        """Hand a ``node.fl.FedAvg`` job to this trainer node; ``.wait()`` for its history.

        The node (started with ``--role trainer``) runs the rounds itself,
        node to node; keep the returned job's ``job_id`` to come back later
        with :meth:`job`, from a new connection too.
        """
        from node.client.fl.jobs import submit_job

        return submit_job(self, job)

    def secagg_party(self) -> HandleParty:
        """This node as a secure-aggregation party (``FedAvg(..., crypto_provider=this)``)."""
        from node.client.fl.jobs import HandleParty

        return HandleParty.of(self)

    def job(self, job_id: str, job: FedAvg | None = None) -> RemoteJob:
        """A job this principal submitted to this trainer node earlier."""
        from node.client.fl.jobs import RemoteJob

        return RemoteJob(self, job_id, job)


def endpoint_for(
    url: str,
    *,
    cafile: str | Path | None,
    fingerprint: str | None,
    known_nodes: str | Path | None,
    client_name: str,
    max_message_bytes: int,
    timeout: float,
    token: str | None = None,
) -> Endpoint:
    """Validate the URL, trust options and token into an :class:`Endpoint`."""
    if not url.startswith(("wss://", "ws://")):
        raise ValueError(f"node URL must start with wss:// (or ws:// for --insecure nodes): {url!r}")
    trust = TrustPolicy(
        cafile=Path(cafile).expanduser() if cafile is not None else None,
        fingerprint=fingerprint,
        known_nodes=Path(known_nodes) if known_nodes is not None else None,
    )
    credentials = client_credentials(token)
    return Endpoint(url, trust, client_name, credentials, max_message_bytes, timeout)


def connect(
    url: str,
    *,
    token: str | None = None,
    cafile: str | Path | None = None,
    fingerprint: str | None = None,
    known_nodes: str | Path | None = None,
    client_name: str = "client",
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    timeout: float = 10.0,
) -> RemoteNode:
    """Connect to the node at ``url`` (``wss://host:port``) and complete the handshake.

    Who you are: ``token`` (``tsr1.<user>.<secret>``, issued by the node's
    operator with ``python -m node users add``), else ``$TESSERA_TOKEN``;
    without either the client is anonymous, which only nodes started with
    ``--allow-anonymous`` accept (others refuse with ``Unauthenticated``).

    Trust: ``cafile`` (the node's ``cert.pem`` or an operator CA) or a pinned
    ``fingerprint="sha256:..."``; with neither, the certificate is trusted on
    first use and recorded in ``known_nodes`` (default
    ``~/.tessera/known_nodes.json``), and a later change is refused.

    Raises :class:`~node.NodeUnavailable` if the node cannot be reached and
    :class:`~node.CertificateMismatch` if it presents an unexpected certificate.
    """
    endpoint = endpoint_for(
        url,
        cafile=cafile,
        fingerprint=fingerprint,
        known_nodes=known_nodes,
        client_name=client_name,
        max_message_bytes=max_message_bytes,
        timeout=timeout,
        token=token,
    )
    return RemoteNode(SyncChannel(endpoint))
