"""Error codes, their classes, their help texts and PROTOCOL.md stay in sync."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import (
    ERROR_CLASSES,
    ERROR_HELP,
    ErrorCode,
    InternalError,
    NotFound,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TensorRefused,
    TesseraError,
    error_class_for,
)
from protocol.ids import RequestId
from protocol.messages import ErrorReply

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "protocol" / "PROTOCOL.md"


def test_every_code_has_exactly_one_class() -> None:
    """ERROR_CLASSES has one entry per ErrorCode, and no class serves two codes."""
    assert set(ERROR_CLASSES) == set(ErrorCode)
    classes = list(ERROR_CLASSES.values())
    assert len(set(classes)) == len(classes)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_code_maps_to_class_and_back(code: ErrorCode) -> None:
    """The class for a code declares that code, and error_class_for finds it by its wire string."""
    cls = ERROR_CLASSES[code]
    assert issubclass(cls, TesseraError)
    assert cls.code is code
    assert error_class_for(code.value) is cls


def test_code_values_are_their_names() -> None:
    """Each code's wire string is its enum name, upper-case with underscores."""
    for code in ErrorCode:
        assert code.value == code.name
        assert re.fullmatch(r"[A-Z][A-Z_]*", code.value)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_code_has_help_text(code: ErrorCode) -> None:
    """ERROR_HELP explains every code in at least a short sentence."""
    assert set(ERROR_HELP) == set(ErrorCode)
    text = ERROR_HELP[code]
    assert isinstance(text, str) and len(text.strip()) >= 20 and text.strip().endswith(".")


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_code_is_documented_in_protocol_md(code: ErrorCode) -> None:
    """PROTOCOL.md's error table has a row for every code, with its help text."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(f"| `{code.value}` |")]
    assert len(rows) == 1, f"{code.value} needs exactly one row in the error table"
    assert ERROR_HELP[code] in rows[0]
    assert f"`{ERROR_CLASSES[code].__name__}`" in rows[0]


@pytest.mark.parametrize("code", ["", "NOPE", "bad_message", "INTERNAL ", "x" * 128])
def test_unknown_code_gives_internal_error(code: str) -> None:
    """error_class_for on a code this version does not know gives InternalError."""
    assert error_class_for(code) is InternalError


def test_remote_protocol_error_family_is_the_decoder_codes() -> None:
    """Exactly the decoder's codes belong to RemoteProtocolError subclasses."""
    family = {code for code, cls in ERROR_CLASSES.items() if issubclass(cls, RemoteProtocolError)}
    assert family == {
        ErrorCode.BAD_MESSAGE,
        ErrorCode.UNKNOWN_KIND,
        ErrorCode.BAD_TENSOR,
        ErrorCode.TOO_LARGE,
        ErrorCode.VERSION_MISMATCH,
    }


def test_with_context_renders_command_and_peer() -> None:
    """with_context puts the command and the peer in front of the message in str(exc)."""
    exc = NotFound.for_object(0x2A)
    assert str(exc) == "object 0x2a not found"
    returned = exc.with_context(command="x + y", peer="wss://alice:8765")
    assert returned is exc
    assert str(exc) == "x + y on wss://alice:8765: object 0x2a not found"
    assert exc.command == "x + y" and exc.peer == "wss://alice:8765"


def test_with_context_renders_command_or_peer_alone() -> None:
    """With only a command, or only a peer, str(exc) names that one."""
    assert str(NotFound("gone", {}).with_context(command="get")) == "get: gone"
    assert str(NotFound("gone", {}).with_context(peer="bob")) == "bob: gone"


def test_with_context_keeps_earlier_context() -> None:
    """A later with_context call without an argument keeps the earlier value."""
    exc = NotFound("gone", {}).with_context(command="get")
    exc.with_context(peer="bob")
    assert str(exc) == "get on bob: gone"


def test_errors_survive_pickling_with_context() -> None:
    """An error copied across threads keeps class, message, details, command and peer."""
    exc = NotFound.for_object(7).with_context(command="get", peer="alice")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is NotFound
    assert (copy.message, copy.details, copy.command, copy.peer) == (
        exc.message, exc.details, "get", "alice"
    )
    assert str(copy) == str(exc)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_error_reply_rebuilds_the_same_class(code: ErrorCode) -> None:
    """An exception sent as an error reply comes back as the same class with its details."""
    original = ERROR_CLASSES[code]("it failed", {"object_id": 5, "what": "x", "ok": None})
    reply = ErrorReply.from_exception(RequestId(12), original)
    decoded = decode_message(encode_message_bytes(reply))
    assert isinstance(decoded, ErrorReply)
    assert decoded.id == 12 and decoded.code == code.value
    rebuilt = error_class_for(decoded.code)(decoded.message, decoded.details)
    assert type(rebuilt) is type(original)
    assert rebuilt.message == "it failed" and rebuilt.details == original.details


def test_error_without_code_is_sent_as_internal() -> None:
    """A TesseraError without a wire code becomes an INTERNAL error reply."""
    reply = ErrorReply.from_exception(RequestId(1), TesseraError("local only", {}))
    assert reply.code == ErrorCode.INTERNAL.value


def test_local_and_remote_protocol_errors_share_the_protocol_root() -> None:
    """Both directions are ProtocolErrors; neither is the other."""
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


def test_local_protocol_error_has_no_wire_code() -> None:
    """A local error (we built the message wrong) has no code and is no wire class."""
    assert LocalProtocolError.code is None
    assert LocalProtocolError not in ERROR_CLASSES.values()


def test_local_protocol_error_is_answered_internal_not_as_the_peers_fault() -> None:
    """An error reply made from a local error is a bare INTERNAL, never a code blaming the peer's frame."""
    local = LocalProtocolError("dtype torch.complex64 cannot be sent", {"dtype": "torch.complex64"})
    reply = ErrorReply.from_exception(RequestId(3), local)
    assert (reply.code, reply.message, reply.details) == (ErrorCode.INTERNAL.value, "internal error", {})


def test_tensor_refused_is_a_bad_request_from_the_decoder() -> None:
    """The no-tensor decoder's refusal travels as BAD_REQUEST and is rebuilt as BadRequest."""
    exc = TensorRefused.for_ext("tensor")
    assert isinstance(exc, RemoteProtocolError) and exc.code is ErrorCode.BAD_REQUEST
    assert error_class_for(ErrorReply.from_exception(RequestId(1), exc).code) is ERROR_CLASSES[ErrorCode.BAD_REQUEST]
