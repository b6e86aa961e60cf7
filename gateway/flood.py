"""Flood control: how many registrations a connection or a source address may make.

A token bucket per key (the connection, or the peer's IP address): ``limit``
requests at once, refilled at ``limit`` per ``window`` seconds.  Pure, with
the time passed in, so the session can be tested with a fake clock.  Memory
is bounded: at most :data:`MAX_TRACKED_KEYS` keys, the least recently used
forgotten first (a forgotten key starts again with a full bucket, which only
ever errs towards serving).

Must not import asyncio or anything that does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "REGISTRATIONS_PER_CONNECTION",
    "REGISTRATIONS_PER_SOURCE",
    "FLOOD_WINDOW",
    "MAX_TRACKED_KEYS",
    "RateLimiter",
]

REGISTRATIONS_PER_CONNECTION = 20
"""Register requests one connection may send per :data:`FLOOD_WINDOW`."""

REGISTRATIONS_PER_SOURCE = 120
"""Register requests all connections from one IP address may send per window."""

FLOOD_WINDOW = 60.0
"""Seconds over which the registration limits are counted."""

MAX_TRACKED_KEYS = 10_000
"""Most keys (source addresses) a limiter remembers."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key, with bursts up to ``limit``."""

    def __init__(
        self, limit: int, window: float = FLOOD_WINDOW, max_keys: int = MAX_TRACKED_KEYS
    ) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be >= 1 and window positive")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Count one event for ``key``; False (and not counted) when over the limit."""
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.limit), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.limit), bucket.tokens + elapsed * self.limit / self.window)
        bucket.updated = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed
