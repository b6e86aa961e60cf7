"""What both channel drivers do around the transport's dial, worded once.

The order of opening a connection is the same for the threaded and the
asyncio driver, which differ only in how they wait: TLS context (or the
plaintext warning), dial, verify the certificate before anything is sent,
make credentials for that very peer, write the core's hello, read one frame
and hand it to :meth:`~peer.client.core.ChannelCore.welcome`.  This module
holds what they share around the waiting: the TLS context and the errors a
failed dial or handshake becomes.  Imports the transport's TLS context only.
"""

from __future__ import annotations

import ssl
import warnings

from protocol.errors import TesseraError

from peer.errors import InsecureConnectionWarning, NodeUnavailable, reason_of
from peer.transport.tls import client_ssl_context

from .endpoint import Endpoint

__all__ = ["tls_context", "unreachable", "handshake_failed", "connection_lost"]


def tls_context(endpoint: Endpoint, stacklevel: int) -> ssl.SSLContext | None:
    """The client TLS context for ``endpoint``; None, with a loud warning, for ``ws://``."""
    if endpoint.secure:
        return client_ssl_context(endpoint.trust)
    warnings.warn(
        f"{endpoint.url} is not TLS: traffic and credentials travel in plaintext",
        InsecureConnectionWarning,
        stacklevel=stacklevel + 1,
    )
    return None


def unreachable(endpoint: Endpoint, exc: BaseException) -> NodeUnavailable:
    """The dial failed (TCP, TLS or the WebSocket upgrade)."""
    return NodeUnavailable(f"cannot reach {endpoint.url}: {reason_of(exc)}", {})


def handshake_failed(endpoint: Endpoint, exc: BaseException) -> NodeUnavailable:
    """The connection dropped or timed out before the hello was answered."""
    return NodeUnavailable(f"handshake with {endpoint.url} failed: {reason_of(exc)}", {})


def connection_lost(endpoint: Endpoint, exc: TesseraError) -> NodeUnavailable:
    """An open connection dropped."""
    return NodeUnavailable(f"connection to {endpoint.url} lost: {exc.message}", {})
