"""The one point where a failed request's error is screened before it leaves the node.

A principal may compute on data it may not read: a data owner's private
dataset, another user's ``private=True`` tensor, anything derived from
them, shares of them, an update trained on them.  Whatever such a request
answers must not depend on those values beyond one bit: success or failure.
Error messages and details are where values slip out ("value 7.3e19 is out
of range", "cannot encode 12 non-finite values", "labels must lie in
[0, 3)", "index 7 is out of bounds"), so every error reply of every kind
goes through :func:`screen`, with the request's :class:`Exposure`.

How a request is known to be *exposed* (to have touched such data) is a
mechanism, not a per-handler duty: the translation point of
:class:`~peer.server.conversation.Conversation` opens an exposure for every
request and keeps it for the request's :class:`~node.server.session.Work`
or :class:`~node.server.session.AsyncWork`; the places that hand out
restricted data mark it themselves, through :func:`note_restricted`:

- the object store, whenever it gives a handler an object the asking
  principal may not read (:meth:`~node.server.store.MemoryStore.get`);
- the owner's datasets, whenever a ``train`` reaches one (they are private
  objects of the operator);
- the parked secure-aggregation updates (each was trained on a dataset).

Once exposed, a request's error passes unchanged only if it is a
*refusal* (:data:`REFUSALS`): decided from metadata the caller may see
(policies, shapes, quotas, ids, reachability), never from values.  Every
other error (a bad request found while encoding, an op that failed, an
internal error) becomes :func:`withheld`: the same code and message
whatever went wrong.  So the residual is one bit per request, success or
failure, which PROTOCOL.md section 18 and SECURITY.md document.  The node's
own log gets the original error's class only.

Pure: contextvars, no torch, no I/O.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from protocol.errors import (
    AlreadyExists,
    NotFound,
    OpFailed,
    PeerUnavailable,
    PermissionDenied,
    QuotaExceeded,
    TesseraError,
    Unauthenticated,
    UnsupportedOp,
)

__all__ = [
    "Exposure", "REFUSALS", "note_restricted", "exposed", "screen", "withheld", "current", "log_text",
]

REFUSALS: tuple[type[TesseraError], ...] = (
    Unauthenticated,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    UnsupportedOp,
    QuotaExceeded,
    PeerUnavailable,
)
"""Errors decided by metadata the caller may see: they pass even for an exposed request."""


@dataclass(slots=True)
class Exposure:
    """Whether one request has touched data its caller may not read (mutable, shared by its work)."""

    restricted: bool = False


_current: contextvars.ContextVar[Exposure | None] = contextvars.ContextVar(
    "tessera_exposure", default=None
)


def current() -> Exposure | None:
    """The exposure of the request being handled on this thread or task, if any."""
    return _current.get()


def note_restricted() -> None:
    """Mark the request being handled as exposed to data its caller may not read."""
    exposure = _current.get()
    if exposure is not None:
        exposure.restricted = True


class exposed:
    """Run a request's handler (or its later work) under ``exposure`` (``with exposed(e):``).

    A class rather than a generator context manager: it wraps every message
    a node handles, and this is a third of the cost.
    """

    __slots__ = ("exposure", "_token")

    def __init__(self, exposure: Exposure) -> None:
        self.exposure = exposure

    def __enter__(self) -> Exposure:
        self._token = _current.set(self.exposure)
        return self.exposure

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def withheld(kind: str) -> OpFailed:
    """The one error an exposed request may answer besides a refusal."""
    return OpFailed(f"{kind} failed on data you may not read; details withheld", {"kind": kind})


def screen(kind: str, exc: TesseraError, exposure: Exposure | None) -> TesseraError:
    """What may leave the node for ``exc`` raised by a request of ``kind``."""
    if exposure is None or not exposure.restricted or isinstance(exc, REFUSALS):
        return exc
    return withheld(kind)


def log_text(exc: BaseException, exposure: Exposure | None) -> str:
    """How the node's log names ``exc``: only its class for an exposed request."""
    if exposure is not None and exposure.restricted:
        return f"{type(exc).__name__} (details withheld: restricted data)"
    return str(exc)
