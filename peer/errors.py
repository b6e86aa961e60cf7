"""Errors a peer raises in its own process that never travel on the wire.

Wire errors (``NotFound``, ``OpFailed``...) come from :mod:`protocol.errors`;
these are about the connection itself: the peer cannot be reached, the
channel was closed, a connection is not encrypted.  ``node`` re-exports them.
"""

from __future__ import annotations

from protocol.errors import TesseraError

__all__ = ["NodeUnavailable", "ClientClosed", "InsecureConnectionWarning", "reason_of"]


class NodeUnavailable(TesseraError):
    """The node cannot be reached, or the connection dropped mid-request."""


class ClientClosed(TesseraError):
    """The client handle was closed and cannot be used any more."""


class InsecureConnectionWarning(UserWarning):
    """A connection without TLS: traffic and credentials travel in plaintext."""


def reason_of(exc: BaseException) -> str:
    """Why an operation failed, in one line for an error message.

    A Tessera error's message; an ``OSError``'s strerror in lower case (without
    the path or errno it repeats); otherwise the exception's text, or its type
    name when it has none.
    """
    if isinstance(exc, TesseraError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
