"""The one redaction point: errors of requests that touched data the caller may not read.

Driven through a real :class:`Session` (codec, store, executor), inline and
as worker-thread :class:`Work`, since the exposure must travel with the
work to the thread that runs it.
"""

from __future__ import annotations

import pytest
import torch

from peer.server.auth import AnonymousAuthenticator
from node.server.executor import Executor
from node.server.offload import INLINE_ELEMENTS
from node.server.policy import Policy
from peer.server.redaction import Exposure, REFUSALS, current, exposed, note_restricted, screen, withheld
from node.server.session import Outcome, Session, Work
from node.server.store import MemoryStore
from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import BadRequest, NotFound, OpFailed, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import CommandRequest, ErrorReply, HelloReply, HelloRequest, Message, SyncRequest
from protocol.values import PointerRef

NODE = NodeId("alice")
OWNER = "operator"
SECRET = b"a" * 32


def opened(store: MemoryStore) -> Session:
    session = Session(NODE, ("node",), Executor(NODE, store), store, AnonymousAuthenticator(), 1 << 26)
    hello = HelloRequest(RequestId(1), PROTOCOL_VERSION, "tests", ("client",), {"scheme": "anonymous", "secret": SECRET})
    assert isinstance(step(session, hello).reply, HelloReply)
    return session


def step(session: Session, message: Message) -> Outcome:
    """One message in; Work runs on this thread like the driver's worker would."""
    result = session.receive(encode_message_bytes(message))
    if isinstance(result, Work):
        result = result.run()
    assert isinstance(result, Outcome), result
    if result.reply is not None:
        return Outcome(decode_message(encode_message_bytes(result.reply)))  # type: ignore[arg-type]
    return result


def error_after(session: Session, message: Message) -> ErrorReply:
    """The error a pipelined command reports at the next sync (or at once)."""
    first = step(session, message)
    if isinstance(first.reply, ErrorReply):
        return first.reply
    reply = step(session, SyncRequest(RequestId(99))).reply
    assert isinstance(reply, ErrorReply), reply
    return reply


def store_with_private(values: torch.Tensor) -> MemoryStore:
    store = MemoryStore()
    store.put(OWNER, ObjectId(1), values, Policy.private(OWNER))
    return store


def ref(object_id: int) -> PointerRef:
    return PointerRef(NODE, ObjectId(object_id))


@pytest.mark.parametrize("size", [4, INLINE_ELEMENTS + 1], ids=["inline", "worker-thread"])
def test_a_failed_command_on_private_data_says_nothing_of_it(size: int) -> None:
    """Out-of-range index on a private tensor: OP_FAILED, the index and the size are not echoed."""
    session = opened(store_with_private(torch.arange(float(size))))
    error = error_after(session, CommandRequest(
        RequestId(2), "getitem", ref(1), (torch.tensor([7_340_033]),), {}, (ObjectId(10),)
    ))
    assert error.code == "OP_FAILED"
    assert "7340033" not in error.message and str(size) not in error.message
    assert error.message == withheld("command").message and error.details == {"kind": "command"}


def test_the_same_failure_on_readable_data_keeps_its_message() -> None:
    store = MemoryStore()
    session = opened(store)
    principal = session.principal
    assert principal is not None
    store.put(principal, ObjectId(1), torch.arange(4.0))
    error = error_after(session, CommandRequest(
        RequestId(2), "getitem", ref(1), (torch.tensor([7_340_033]),), {}, (ObjectId(10),)
    ))
    assert error.code == "OP_FAILED" and "7340033" in error.message


def test_refusals_pass_unchanged_for_private_data() -> None:
    """A refusal decided by policy (a value-sensitive argument) keeps its code and message."""
    session = opened(store_with_private(torch.tensor([0, 1, 2])))
    error = error_after(session, CommandRequest(
        RequestId(2), "one_hot", None, (ref(1),), {}, (ObjectId(10),)
    ))
    assert error.code == "PERMISSION_DENIED" and "may not read" in error.message


def test_different_failures_on_private_data_answer_identically() -> None:
    """Two failures with different causes: one code, one message (the one-bit residual)."""
    session = opened(store_with_private(torch.arange(6.0).reshape(2, 3)))
    bad_index = error_after(session, CommandRequest(
        RequestId(2), "getitem", ref(1), (torch.tensor([9]),), {}, (ObjectId(10),)
    ))
    bad_shape = error_after(session, CommandRequest(
        RequestId(3), "matmul", ref(1), (torch.ones(7, 2),), {}, (ObjectId(11),)
    ))
    assert (bad_index.code, bad_index.message) == (bad_shape.code, bad_shape.message)


def test_screen_passes_refusals_and_withholds_the_rest() -> None:
    exposure = Exposure()
    leak = BadRequest("value 7.25e19 is out of range", {"value": 7.25e19})
    assert screen("mpc_split", leak, exposure) is leak  # nothing restricted touched yet
    with exposed(exposure):
        note_restricted()
    assert exposure.restricted
    hidden = screen("mpc_split", leak, exposure)
    assert hidden.code.value == "OP_FAILED" and "7.25" not in hidden.message and hidden.details == {"kind": "mpc_split"}
    for refusal in (PermissionDenied("no", {}), NotFound("no", {}), QuotaExceeded("no", {})):
        assert isinstance(refusal, REFUSALS) and screen("x", refusal, exposure) is refusal
    assert isinstance(screen("x", OpFailed("index 7", {}), exposure), OpFailed)
    assert "7" not in screen("x", OpFailed("index 7", {}), exposure).message


def test_marks_outside_a_request_are_ignored_and_exposures_do_not_leak() -> None:
    """A mark with no request open changes nothing; one request's mark does not reach the next."""
    note_restricted()
    assert current() is None
    first, second = Exposure(), Exposure()
    with exposed(first):
        note_restricted()
    with exposed(second):
        assert current() is second
    assert first.restricted and not second.restricted and current() is None


def test_an_internal_error_on_private_data_is_withheld_in_the_reply_and_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception whose message holds a value: OP_FAILED withheld, the log names the class only."""
    import node.server.executor as executor_module

    def leaky(*args: object, **kwargs: object) -> None:
        cell = 31337.5  # stands for a value read from the data
        raise ValueError(f"the cell holds {cell * 1}")

    monkeypatch.setattr(executor_module, "run_op", leaky)
    session = opened(store_with_private(torch.arange(4.0)))
    with caplog.at_level("DEBUG", logger="tessera.session"):
        error = error_after(session, CommandRequest(RequestId(2), "neg", ref(1), (), {}, (ObjectId(10),)))
    assert error.code == "OP_FAILED" and error.message == withheld("command").message
    assert "31337" not in caplog.text and "ValueError" in caplog.text
