"""Where a node's tensor work runs: inline on the event loop, or in a worker thread.

Owns the one policy every handler of a node follows (the executor's
commands, a party's Beaver and truncation steps, the crypto provider's
dealing, secure aggregation's splits and sums): work whose cost estimate,
the number of tensor elements it touches, is below :data:`INLINE_ELEMENTS`
runs on the loop; anything bigger goes to ``asyncio.to_thread``, so one
client's large product never stalls heartbeats and other clients' small
commands.  :func:`runs_inline` is the pure decision (the executor and the
session use it to choose between an answer and a ``Work``);
:func:`offload` runs a callable where the decision puts it.  Must not import
websockets or anything of ``node.server.mpc`` / ``node.server.fl``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

__all__ = ["INLINE_ELEMENTS", "runs_inline", "offload"]

T = TypeVar("T")

INLINE_ELEMENTS = 1 << 16
"""Work touching fewer tensor elements than this runs on the event loop.

Measured on this project's 2-core machine (one torch thread): a hop through
``asyncio.to_thread`` costs about 45 us; at 2^16 int64 elements a product
takes about 37 us and an AES-CTR expansion plus a subtraction (a Beaver
mask) about 130 us.  Below the limit the hop would cost as much as the
work, and the loop is blocked for a fraction of a millisecond at most;
above it, the work grows while the hop does not.
"""


def runs_inline(elements: int) -> bool:
    """True when work touching ``elements`` tensor elements belongs on the event loop."""
    return elements < INLINE_ELEMENTS


async def offload(elements: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the loop if :func:`runs_inline` says so, else in a worker thread."""
    if runs_inline(elements):
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
