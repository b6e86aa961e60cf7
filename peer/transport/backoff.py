"""Reconnect delays: capped exponential backoff with jitter, as a pure function.

Jitter spreads the reconnects of many nodes after a gateway restart so they
do not arrive in lockstep; the cap keeps re-registration within a few
seconds of the gateway's return.
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay", "BASE_DELAY", "MAX_DELAY"]

BASE_DELAY = 0.2
"""Seconds before the first retry (before jitter)."""

MAX_DELAY = 3.0
"""Longest wait between two attempts (before jitter)."""


def backoff_delay(
    attempt: int,
    rng: random.Random,
    base: float = BASE_DELAY,
    cap: float = MAX_DELAY,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    ``min(cap, base * 2**attempt)`` scaled by a uniform factor in [0.5, 1]
    ("equal jitter"): never zero, never above the cap.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return float(ceiling * (0.5 + 0.5 * rng.random()))
