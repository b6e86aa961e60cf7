"""RequestTracker: pipelined-request bookkeeping and the errors it rebuilds, without I/O."""

from __future__ import annotations

import pytest

from peer.client.tracker import AUTO_BARRIER_EVERY, RequestTracker, rebuild_error
from node.errors import NodeUnavailable
from protocol.errors import (
    ERROR_CLASSES,
    BadTensor,
    ErrorCode,
    InternalError,
    NotFound,
    OpFailed,
)
from protocol.ids import RequestId
from protocol.messages import ErrorReply

PEER = "bob"


def error(rid: int, code: str = "OP_FAILED", message: str = "op 'matmul' failed: shapes") -> ErrorReply:
    return ErrorReply(RequestId(rid), code, message, {"op": "matmul"})


def tracker_with(*descriptions: str) -> RequestTracker:
    """A tracker with one posted request per description, ids 1, 2, ..."""
    tracker = RequestTracker(PEER)
    for rid, description in enumerate(descriptions, 1):
        tracker.posted(RequestId(rid), description)
    return tracker


def test_failure_is_rebuilt_naming_command_and_peer() -> None:
    """An error for a posted request comes back as its class, naming the command and the peer."""
    tracker = tracker_with("send(tensor[2])", "<0x1>.matmul(<0x2>)")
    tracker.on_error(error(2))
    failure = tracker.take_failure()
    assert type(failure) is OpFailed
    assert str(failure) == "<0x1>.matmul(<0x2>) on bob: op 'matmul' failed: shapes"
    assert failure.command == "<0x1>.matmul(<0x2>)" and failure.peer == PEER
    assert failure.details == {"op": "matmul"}
    assert tracker.outstanding == 1, "the failed request is no longer outstanding"


def test_take_failure_clears_and_raise_failures_raises() -> None:
    """take_failure hands a failure over once; raise_failures raises it and is quiet when none."""
    tracker = tracker_with("a")
    tracker.raise_failures()
    tracker.on_error(error(1, "NOT_FOUND", "object 0x5 not found"))
    with pytest.raises(NotFound, match="^a on bob: object 0x5 not found$"):
        tracker.raise_failures()
    assert tracker.take_failure() is None
    tracker.raise_failures()


def test_barrier_prunes_requests_before_it() -> None:
    """barrier(N) forgets every posted request with an id below N and keeps the rest."""
    tracker = tracker_with("a", "b", "c", "d")
    tracker.barrier(RequestId(3))
    assert tracker.outstanding == 2
    tracker.on_error(error(2))
    assert tracker.take_failure().command is None, "request 2 was already confirmed"
    tracker.on_error(error(3))
    assert tracker.take_failure().command == "c"
    tracker.barrier(RequestId(100))
    assert tracker.outstanding == 0


def test_first_failure_is_reported_with_a_count_of_later_ones() -> None:
    """With several failures the first (root cause) is raised, its message counting the others."""
    tracker = tracker_with("a", "b", "c", "d")
    tracker.on_error(error(2, "OP_FAILED", "root cause"))
    tracker.on_error(error(3, "NOT_FOUND", "object 0x9 not found"))
    tracker.on_error(error(4, "NOT_FOUND", "object 0xa not found"))
    failure = tracker.take_failure()
    assert type(failure) is OpFailed and failure.command == "b"
    assert str(failure) == "b on bob: root cause (and 2 later command(s) failed)"
    assert failure.details["later_failures"] == 2
    assert tracker.take_failure() is None


def test_lost_fails_every_unconfirmed_request() -> None:
    """lost() turns each posted, unconfirmed request into a failure of the reason's class."""
    tracker = tracker_with("a", "b", "c", "d")
    tracker.barrier(RequestId(3))
    tracker.lost(NodeUnavailable("connection reset", {"code": 1006}))
    assert tracker.outstanding == 0
    failure = tracker.take_failure()
    assert type(failure) is NodeUnavailable
    assert failure.command == "c" and failure.peer == PEER
    assert str(failure) == (
        "c on bob: not confirmed before the connection dropped (connection reset) "
        "(and 1 later command(s) failed)"
    )
    assert failure.details == {"code": 1006, "later_failures": 1}


def test_lost_with_nothing_outstanding_adds_no_failure() -> None:
    """A drop after every request was confirmed reports nothing."""
    tracker = tracker_with("a", "b")
    tracker.barrier(RequestId(3))
    tracker.lost(NodeUnavailable("gone", {}))
    assert tracker.take_failure() is None


def test_lost_after_an_error_keeps_the_error_first() -> None:
    """An error that arrived before the drop stays the root cause."""
    tracker = tracker_with("a", "b")
    tracker.on_error(error(1))
    tracker.lost(NodeUnavailable("gone", {}))
    failure = tracker.take_failure()
    assert type(failure) is OpFailed and failure.command == "a"
    assert failure.details["later_failures"] == 1


@pytest.mark.parametrize("code", ["NO_SUCH_CODE", "op_failed", ""])
def test_unknown_code_becomes_internal_error(code: str) -> None:
    """An error code this client does not know is rebuilt as InternalError."""
    tracker = tracker_with("a")
    tracker.on_error(error(1, code, "from the future"))
    failure = tracker.take_failure()
    assert type(failure) is InternalError and str(failure) == "a on bob: from the future"


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_known_code_rebuilds_its_own_class(code: ErrorCode) -> None:
    """Each wire code is rebuilt as the one class that declares it."""
    rebuilt = rebuild_error(error(1, code.value, "m"), "cmd", PEER)
    assert type(rebuilt) is ERROR_CLASSES[code] and rebuilt.code is code


def test_error_for_an_unposted_request_still_names_the_peer() -> None:
    """An error whose id matches no posted request (e.g. id 0) names the peer only."""
    tracker = tracker_with("a")
    tracker.on_error(error(0, "BAD_MESSAGE", "body is not valid msgpack"))
    failure = tracker.take_failure()
    assert failure.command is None and str(failure) == "bob: body is not valid msgpack"
    assert tracker.outstanding == 1


def test_local_failure_is_reported_at_the_next_sync_point() -> None:
    """A request that could not be encoded is reported like a remote failure, naming it."""
    tracker = tracker_with("send(tensor[1])")
    tracker.failed_locally(BadTensor("dtype torch.complex64 cannot be sent", {}), "send(tensor[1])")
    failure = tracker.take_failure()
    assert isinstance(failure, BadTensor)
    assert str(failure) == "send(tensor[1]) on bob: dtype torch.complex64 cannot be sent"


def test_auto_barrier_is_due_every_n_posts() -> None:
    """posted() returns True exactly on every AUTO_BARRIER_EVERY-th outstanding request."""
    tracker = RequestTracker(PEER)
    due = [tracker.posted(RequestId(rid), "x") for rid in range(1, 2 * AUTO_BARRIER_EVERY + 1)]
    assert [i + 1 for i, flag in enumerate(due) if flag] == [AUTO_BARRIER_EVERY, 2 * AUTO_BARRIER_EVERY]


def test_auto_barrier_counts_outstanding_requests_not_posts() -> None:
    """After a barrier prunes the records, the next flag comes AUTO_BARRIER_EVERY posts later."""
    tracker = RequestTracker(PEER)
    for rid in range(1, AUTO_BARRIER_EVERY):
        assert not tracker.posted(RequestId(rid), "x")
    tracker.barrier(RequestId(AUTO_BARRIER_EVERY))
    start = AUTO_BARRIER_EVERY + 1
    due = [tracker.posted(RequestId(rid), "x") for rid in range(start, start + AUTO_BARRIER_EVERY)]
    assert due.count(True) == 1 and due[-1]

