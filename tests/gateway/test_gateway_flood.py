"""RateLimiter: bursts up to the limit, refill over the window, bounded memory."""

from __future__ import annotations

from gateway.flood import RateLimiter


def test_burst_then_refused() -> None:
    """limit events pass at once; the next one in the same instant is refused."""
    limiter = RateLimiter(3, 60.0)
    assert [limiter.allow("ip", 0.0) for _ in range(4)] == [True, True, True, False]


def test_refills_over_the_window() -> None:
    """After window/limit seconds one more event is allowed."""
    limiter = RateLimiter(3, 60.0)
    for _ in range(3):
        limiter.allow("ip", 0.0)
    assert not limiter.allow("ip", 19.0)
    assert limiter.allow("ip", 20.5)


def test_keys_are_independent() -> None:
    """One source's flood does not consume another source's budget."""
    limiter = RateLimiter(1, 60.0)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)


def test_memory_is_bounded() -> None:
    """At most max_keys keys are remembered; the least recently used goes first."""
    limiter = RateLimiter(1, 60.0, max_keys=2)
    for key in ("a", "b", "c"):
        limiter.allow(key, 0.0)
    assert limiter.allow("a", 0.0)  # forgotten, so a full bucket again
    assert not limiter.allow("c", 0.0)
