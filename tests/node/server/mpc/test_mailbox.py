"""The secret-sharing mailbox's bookkeeping: expiry in order, a session's letters dropped with it."""

from __future__ import annotations

import asyncio

import pytest

from node.server.mpc.mailbox import FINISHED_TTL, LETTER_TTL, MATERIAL_TTL, CompareRound, Mailbox, Sender, Slot
from node.server.store import Principal
from protocol.errors import AlreadyExists, PeerUnavailable
from protocol.ids import NodeId

BOB: Sender = (NodeId("bob"), "ab" * 32)
USER = Principal("user:t")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_letters_and_finished_sessions_expire_oldest_first() -> None:
    clock = Clock()
    box = Mailbox(clock)
    box.post((b"s1", Slot.OPEN_BEAVER, 1), BOB, "one", 8)
    clock.now += LETTER_TTL / 2
    box.post((b"s2", Slot.OPEN_BEAVER, 1), BOB, "two", 8)
    assert box.buffered == 2
    clock.now += LETTER_TTL / 2 + 1  # s1's letter is past its time, s2's is not
    box.post((b"s3", Slot.OPEN_BEAVER, 1), BOB, "three", 8)
    assert box.buffered == 2
    box.begin(b"s4", USER, {1: BOB})
    box.end(b"s4")
    with pytest.raises(AlreadyExists):
        box.begin(b"s4", USER, {1: BOB})
    clock.now += FINISHED_TTL + LETTER_TTL + 1
    box.begin(b"s4", USER, {1: BOB})  # forgotten: the id may be used again
    assert box.buffered == 0


def test_material_dealt_ahead_waits_material_ttl_and_openings_letter_ttl() -> None:
    """Seed and explicit letters outlive LETTER_TTL (pre-dealt material) but expire after MATERIAL_TTL."""
    assert MATERIAL_TTL > LETTER_TTL
    clock = Clock()
    box = Mailbox(clock)
    box.post((b"m", Slot.SEED, 0), BOB, "seed", 0)
    box.post((b"m", Slot.EXPLICIT, 0), BOB, "keys", 1 << 20)
    box.post((b"o", Slot.OPEN_BEAVER, 1), BOB, "open", 16)
    clock.now += LETTER_TTL + 1
    box.post((b"late", CompareRound(0), 1), BOB, "open", 16)  # expiry runs: the opening of "o" goes
    assert box.buffered == 3
    clock.now += MATERIAL_TTL - LETTER_TTL - 2  # the material's last second

    async def take() -> object:
        box.begin(b"m", USER, {1: BOB})
        try:
            return await box.take((b"m", Slot.EXPLICIT, 0), BOB, clock.now + 1, "material")
        finally:
            box.end(b"m")

    assert asyncio.run(take()) == "keys"
    box.post((b"n", Slot.SEED, 0), BOB, "seed", 0)
    clock.now += MATERIAL_TTL + 1
    box.begin(b"n", USER, {1: BOB})  # expiry runs: "n"'s seed and the late opening are gone
    assert box.buffered == 0
    with pytest.raises(PeerUnavailable):
        asyncio.run(box.take((b"n", Slot.SEED, 0), BOB, clock.now, "material"))


def test_ending_a_session_drops_its_letters_only() -> None:
    box = Mailbox(Clock())
    for session in (b"a", b"b"):
        box.post((session, Slot.SEED, 0), BOB, "seed", 0)
        box.post((session, Slot.OPEN_BEAVER, 1), BOB, "open", 16)
    box.begin(b"a", USER, {1: BOB})
    box.end(b"a")
    assert box.buffered == 2
    box.post((b"a", Slot.SEED, 0), BOB, "late", 0)  # after the end: dropped
    assert box.buffered == 2

    async def take() -> object:
        box.begin(b"b", USER, {1: BOB})
        try:
            return await box.take((b"b", Slot.OPEN_BEAVER, 1), BOB, 2000.0, "masked values")
        finally:
            box.end(b"b")

    assert asyncio.run(take()) == "open"
    assert box.buffered == 0


def test_an_abort_buffered_before_the_step_fails_it_at_once() -> None:
    box = Mailbox(Clock())
    box.post((b"x", Slot.ABORT, 1), BOB, "gave up", 0)
    with pytest.raises(PeerUnavailable, match="gave up"):
        box.begin(b"x", USER, {1: BOB})
    assert box.buffered == 0


async def test_each_comparison_round_has_its_own_slot() -> None:
    """Round k's letter waits in its own slot: an early round-(k+1) letter never answers a round-k take."""
    box = Mailbox(Clock())
    box.begin(b"c", USER, {1: BOB})
    try:
        box.post((b"c", CompareRound(1), 1), BOB, "round 1", 8)
        box.post((b"c", CompareRound(0), 1), BOB, "round 0", 8)
        assert CompareRound(0).value != CompareRound(1).value
        assert await box.take((b"c", CompareRound(0), 1), BOB, 2000.0, "masked values") == "round 0"
        assert await box.take((b"c", CompareRound(1), 1), BOB, 2000.0, "masked values") == "round 1"
        with pytest.raises(AlreadyExists):
            box.post((b"c", CompareRound(2), 1), BOB, "x", 8)
            box.post((b"c", CompareRound(2), 1), BOB, "again", 8)
    finally:
        box.end(b"c")
