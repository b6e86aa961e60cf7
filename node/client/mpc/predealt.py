"""Comparison sessions dealt ahead of use, waiting in the client for the step that spends them.

Runs in the user's process.  A comparison's material is dealt by the
crypto provider into the parties' mailboxes under a fresh session id
(``mpc_deal``); the parties keep it until a step names that session, for at
most :data:`protocol.mpc.MATERIAL_TTL` seconds.  Dealing it ahead
(:func:`node.client.mpc.preprocess.deal_ahead`) only means the client
remembers the session id here and names it in a later step instead of
dealing then, so the online op never waits for the provider.

A deal names its parties (as the client verified them) and its provider,
not a tensor: sessions are pooled per (parties, provider) in one
process-wide registry, so material dealt before ``node.share`` serves any
shared tensor between the same nodes.  Within a pool, a session waits in a
FIFO keyed by its step's op and exact ``compare`` spec (shape, width, relu,
route): it is taken at most once, and never for another shape, width or
route.  A session older than :data:`USE_WITHIN` is dropped unused (the
parties drop its letters on their own), so a step never names material its
parties may already have expired.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from protocol.mpc import MATERIAL_TTL, DealerRef, PartyAddress, StepOp, WireCompare

__all__ = ["Predealt", "USE_WITHIN", "pool_for"]

USE_WITHIN = MATERIAL_TTL - 120.0
"""Seconds after its deal was posted that the client still spends a pre-dealt session.

The parties keep material MATERIAL_TTL seconds after it *arrives*, later
than the client posted the deal; the 120 s margin covers a step queued
behind others (a step's own wait for material is bounded by its timeout).
"""

Recipients = tuple[tuple[PartyAddress, ...], DealerRef | None]
SpecKey = tuple[StepOp, WireCompare]


class Predealt:
    """The pre-dealt sessions of one (parties, provider): FIFOs by op and spec, thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._fifos: dict[SpecKey, deque[tuple[bytes, float]]] = {}

    def put(self, op: StepOp, spec: WireCompare, session: bytes) -> None:
        """``session``'s deal for ``op`` on ``spec`` was just posted."""
        with self._lock:
            self._fifos.setdefault((op, spec), deque()).append((session, self.clock()))

    def take(self, op: StepOp, spec: WireCompare) -> bytes | None:
        """The oldest live session dealt for exactly ``op`` on ``spec``, removed; None if there is none."""
        now = self.clock()
        with self._lock:
            fifo = self._fifos.get((op, spec))
            while fifo:
                session, dealt = fifo.popleft()
                if now - dealt < USE_WITHIN:
                    break
            else:
                self._fifos.pop((op, spec), None)
                return None
            if not fifo:
                del self._fifos[(op, spec)]
            return session

    def discard(self, sessions: set[bytes]) -> None:
        """Forget ``sessions`` (their deals failed): no step may name them."""
        with self._lock:
            for key in list(self._fifos):
                kept = deque(entry for entry in self._fifos[key] if entry[0] not in sessions)
                if kept:
                    self._fifos[key] = kept
                else:
                    del self._fifos[key]

    def count(self, op: StepOp | None = None) -> int:
        """Live sessions waiting (of ``op``, or all)."""
        now = self.clock()
        with self._lock:
            return sum(
                1
                for (kind, _), fifo in self._fifos.items()
                if op is None or kind is op
                for _, dealt in fifo
                if now - dealt < USE_WITHIN
            )


_POOLS: dict[Recipients, Predealt] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(addresses: tuple[PartyAddress, ...], dealer: DealerRef | None) -> Predealt:
    """The process-wide pool of sessions dealt to ``addresses`` by ``dealer``."""
    key = (addresses, dealer)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = Predealt()
        return pool
