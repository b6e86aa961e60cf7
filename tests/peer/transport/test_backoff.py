"""Reconnect backoff: capped, exponential, jittered, never zero."""

from __future__ import annotations

import random

import pytest

from peer.transport.backoff import BASE_DELAY, MAX_DELAY, backoff_delay


def test_delays_grow_then_stay_under_the_cap() -> None:
    """Ceilings double per attempt until MAX_DELAY; every delay lies in [ceiling/2, ceiling]."""
    rng = random.Random(1)
    for attempt in range(40):
        ceiling = min(MAX_DELAY, BASE_DELAY * 2**attempt)
        delay = backoff_delay(attempt, rng)
        assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_simultaneous_reconnects() -> None:
    """Many nodes retrying the same attempt do not pick the same delay."""
    delays = {round(backoff_delay(3, random.Random(seed)), 6) for seed in range(50)}
    assert len(delays) > 40


def test_negative_attempt_is_refused() -> None:
    """A negative attempt number is a programming error."""
    with pytest.raises(ValueError):
        backoff_delay(-1, random.Random(0))
