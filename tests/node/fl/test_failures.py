"""The dropout policy: which failures leave an owner out, which fail the job, when a round fails."""

from __future__ import annotations

import pytest

from node.fl.failures import describe_failure, dropouts, is_dropout, require
from node.fl.job_errors import RoundFailed
from protocol.errors import BadRequest, InternalError, NotFound, PeerUnavailable, PermissionDenied, QuotaExceeded, TesseraError


@pytest.mark.parametrize("failure", [
    PeerUnavailable("gone", {}), InternalError("internal error", {}), QuotaExceeded("full", {}),
    TimeoutError("late"), ConnectionResetError("reset"), TesseraError("connection lost"),
])
def test_unlucky_owners_are_dropouts(failure: BaseException) -> None:
    """Lost, late, full or internally failing owners (and local connection failures) drop out."""
    assert is_dropout(failure)


@pytest.mark.parametrize("failure", [
    BadRequest("bad spec", {}), NotFound("no dataset", {}), PermissionDenied("policy", {}), ValueError("bug"),
])
def test_refusals_are_not_dropouts(failure: BaseException) -> None:
    """An owner refusing the task (or a bug of ours) is not luck: the job fails with it."""
    assert not is_dropout(failure)


def test_dropouts_gives_reasons_or_raises_the_first_refusal() -> None:
    """Every dropout's reason in one line; the first refusal, in the mapping's order, is raised."""
    assert dropouts({2: TimeoutError("no\nanswer   in time"), 0: PeerUnavailable("x" * 600, {})}) == {
        2: "no answer in time", 0: "x" * 500,
    }
    first, second = NotFound("no dataset", {}), BadRequest("bad spec", {})
    with pytest.raises(NotFound):
        dropouts({0: TimeoutError(), 1: first, 2: second})
    assert describe_failure(TimeoutError()) == "TimeoutError"


def test_require_names_the_dropouts_in_owner_order() -> None:
    """Enough owners pass; too few raise RoundFailed naming each dropout's dataset and reason."""
    require(0, 2, 2, {}, ["a/x", "b/y"])
    with pytest.raises(RoundFailed, match=r"round 3 failed: 1 of the required 2 owners answered \(a/x: late; b/y: gone\)"):
        require(3, 1, 2, {1: "gone", 0: "late"}, ["a/x", "b/y", "c/z"])
