"""Typed errors with stable wire codes.

One root, :class:`TesseraError`.  Every subclass that can travel on the wire
declares its :class:`ErrorCode`; :data:`ERROR_CLASSES` maps each code to
exactly one class so a client can rebuild the same exception a node raised.
Errors that only ever happen locally (a dropped connection, a certificate
mismatch) live in ``peer/`` and ``node/`` and have no code.

Protocol violations are split the way h11 splits them, by who broke the
protocol.  :class:`RemoteProtocolError` (a peer's frame is not a valid
message: the decoder raises only this family, and the receiver answers it
with the subclass's code) and :class:`LocalProtocolError` (this side built a
message the protocol cannot carry: our bug or the caller's value, raised by
the encoder).  A local error has no wire code, so it can never be answered
to a peer as if the peer were at fault: a server's translation point answers
it ``INTERNAL``, as any other bug.

Messages are built from structured fields (``details``) so they stay useful
after a round trip.  Nothing here imports anything of ours.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Mapping, Union

__all__ = [
    "ErrorCode",
    "ERROR_HELP",
    "ERROR_CLASSES",
    "DetailValue",
    "TesseraError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "MalformedMessage",
    "UnknownKind",
    "BadTensor",
    "MessageTooLarge",
    "VersionMismatch",
    "TensorRefused",
    "Unauthenticated",
    "BadRequest",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "UnsupportedOp",
    "OpFailed",
    "QuotaExceeded",
    "PeerUnavailable",
    "InternalError",
    "error_class_for",
]

DetailValue = Union[str, int, float, bool, None]


class ErrorCode(str, enum.Enum):
    """Stable error codes; the string value is what goes on the wire."""

    BAD_MESSAGE = "BAD_MESSAGE"
    UNKNOWN_KIND = "UNKNOWN_KIND"
    BAD_TENSOR = "BAD_TENSOR"
    TOO_LARGE = "TOO_LARGE"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNSUPPORTED_OP = "UNSUPPORTED_OP"
    OP_FAILED = "OP_FAILED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    PEER_UNAVAILABLE = "PEER_UNAVAILABLE"
    INTERNAL = "INTERNAL"


ERROR_HELP: Mapping[ErrorCode, str] = {
    ErrorCode.BAD_MESSAGE: "The frame is not a valid message: not msgpack, a missing or "
    "mistyped field, nesting or a container beyond the limits.",
    ErrorCode.UNKNOWN_KIND: "The message kind is not one this protocol version defines.",
    ErrorCode.BAD_TENSOR: "A tensor value is invalid: dtype not allowed, shape and payload "
    "length disagree, or the payload lies outside the frame.",
    ErrorCode.TOO_LARGE: "The frame or a value in it exceeds the receiver's size limit.",
    ErrorCode.VERSION_MISMATCH: "The peers speak different protocol versions.",
    ErrorCode.UNAUTHENTICATED: "The request came before a successful handshake, or the "
    "credentials were refused.",
    ErrorCode.BAD_REQUEST: "The message is well formed but cannot be honoured as asked "
    "(for example a wrong number of result ids).",
    ErrorCode.NOT_FOUND: "No object with that id exists for the asking principal.",
    ErrorCode.ALREADY_EXISTS: "The object id chosen for a new object is already in use.",
    ErrorCode.PERMISSION_DENIED: "The asking principal may not do this to that object.",
    ErrorCode.UNSUPPORTED_OP: "The op is not in the allowlist, or not in the form used "
    "(method or function).",
    ErrorCode.OP_FAILED: "The op is allowed but raised while running (wrong shapes, "
    "dtypes or arguments).",
    ErrorCode.QUOTA_EXCEEDED: "The principal's memory or object-count quota would be "
    "exceeded.",
    ErrorCode.PEER_UNAVAILABLE: "Another node this request needed (a transfer's destination) "
    "could not be reached, or did not present the expected certificate.",
    ErrorCode.INTERNAL: "The receiver hit a bug; details are in its log, not in the reply.",
}


class TesseraError(Exception):
    """Root of every Tessera exception.

    ``details`` holds the structured fields the message was built from.
    ``command`` and ``peer`` are filled in by the client when it rebuilds a
    remote error, so the message names which command failed and where.
    """

    code: ClassVar[ErrorCode | None] = None

    def __init__(
        self,
        message: str,
        details: Mapping[str, DetailValue] | None = None,
        *,
        command: str | None = None,
        peer: str | None = None,
    ) -> None:
        self.message = message
        self.details: dict[str, DetailValue] = dict(details or {})
        self.command = command
        self.peer = peer
        super().__init__(self._render())

    def with_context(self, *, command: str | None = None, peer: str | None = None) -> TesseraError:
        """Attach the failed command and the peer, and re-render the message."""
        if command is not None:
            self.command = command
        if peer is not None:
            self.peer = peer
        self.args = (self._render(),)
        return self

    def _render(self) -> str:
        prefix = ""
        if self.command is not None and self.peer is not None:
            prefix = f"{self.command} on {self.peer}: "
        elif self.command is not None:
            prefix = f"{self.command}: "
        elif self.peer is not None:
            prefix = f"{self.peer}: "
        return prefix + self.message

    def __reduce__(self) -> tuple[Any, ...]:  # keep exceptions copyable across threads
        return (_rebuild, (type(self), self.message, self.details, self.command, self.peer))


def _rebuild(
    cls: type[TesseraError],
    message: str,
    details: Mapping[str, DetailValue],
    command: str | None,
    peer: str | None,
) -> TesseraError:
    return cls(message, details, command=command, peer=peer)


class ProtocolError(TesseraError):
    """A message breaks the protocol: the root of the local and the remote family.

    Catch :class:`RemoteProtocolError` to answer a peer; this root only to
    handle both directions alike.
    """

    request_id: int = 0
    """Id of the message concerned: the one a peer's frame carried, when it
    could be read (else 0), or the one this side failed to encode."""


class LocalProtocolError(ProtocolError):
    """This side built a message the protocol cannot carry (h11's ``LocalProtocolError``).

    A value outside the grammar, a dtype outside the allowlist, a sparse or
    meta tensor, an integer beyond 64 bits: raised by the encoder, before
    anything is sent.  No wire code: the peer did nothing wrong.
    """


class RemoteProtocolError(ProtocolError):
    """A peer's frame is not a valid message (h11's ``RemoteProtocolError``).

    The decoder raises only this family for bad input, whatever the bytes;
    each subclass declares the code the receiver answers with.
    ``MessageTooLarge`` is also raised by a sender refusing, before sending,
    a frame its peer would refuse for its size.
    """

    code = ErrorCode.BAD_MESSAGE


class MalformedMessage(RemoteProtocolError):
    """Not msgpack, not a map, a missing or mistyped field, limits exceeded."""

    code = ErrorCode.BAD_MESSAGE


class UnknownKind(RemoteProtocolError):
    """The envelope is valid but names a kind this version does not define."""

    code = ErrorCode.UNKNOWN_KIND

    @classmethod
    def for_kind(cls, kind: str) -> UnknownKind:
        return cls(f"unknown message kind {kind[:64]!r}", {"kind": kind[:64]})


class BadTensor(RemoteProtocolError):
    """A tensor value is invalid (dtype, shape, payload bounds)."""

    code = ErrorCode.BAD_TENSOR


class MessageTooLarge(RemoteProtocolError):
    """The frame, or a value declared in it, exceeds a size limit."""

    code = ErrorCode.TOO_LARGE

    @classmethod
    def for_size(cls, what: str, size: int, limit: int) -> MessageTooLarge:
        return cls(
            f"{what} of {size} bytes exceeds the limit of {limit} bytes",
            {"what": what, "size": size, "limit": limit},
        )


class VersionMismatch(RemoteProtocolError):
    """The peer speaks another protocol version."""

    code = ErrorCode.VERSION_MISMATCH

    @classmethod
    def for_versions(cls, ours: int, theirs: int) -> VersionMismatch:
        return cls(
            f"protocol version mismatch: this side speaks {ours}, the peer {theirs}",
            {"ours": ours, "theirs": theirs},
        )


class Unauthenticated(TesseraError):
    """No handshake yet, or credentials refused."""

    code = ErrorCode.UNAUTHENTICATED


class BadRequest(TesseraError):
    """Well formed, but cannot be honoured as asked."""

    code = ErrorCode.BAD_REQUEST


class TensorRefused(RemoteProtocolError, BadRequest):
    """A tensor or dtype value sent to a receiver that takes none (the gateway).

    Well formed, but not served: the decoder of such a receiver refuses the
    ext before building anything, so a peer cannot make it import torch.
    """

    code = ErrorCode.BAD_REQUEST

    @classmethod
    def for_ext(cls, what: str) -> TensorRefused:
        return cls(f"{what} values are not accepted here", {"value": what})


class NotFound(TesseraError, LookupError):
    """No such object for the asking principal (existence is not revealed)."""

    code = ErrorCode.NOT_FOUND

    @classmethod
    def for_object(cls, object_id: int) -> NotFound:
        return cls(f"object {object_id:#x} not found", {"object_id": object_id})


class AlreadyExists(TesseraError):
    """The client chose an object id that is already in use."""

    code = ErrorCode.ALREADY_EXISTS

    @classmethod
    def for_object(cls, object_id: int) -> AlreadyExists:
        return cls(f"object id {object_id:#x} is already in use", {"object_id": object_id})


class PermissionDenied(TesseraError):
    """The principal may not do this to that object."""

    code = ErrorCode.PERMISSION_DENIED


class UnsupportedOp(TesseraError):
    """The op is not in the allowlist (or not in that form)."""

    code = ErrorCode.UNSUPPORTED_OP

    @classmethod
    def for_op(cls, op: str, form: str) -> UnsupportedOp:
        shown = op[:64]
        return cls(f"op {shown!r} is not allowed as a {form}", {"op": shown, "form": form})


class OpFailed(TesseraError):
    """An allowed op raised while running."""

    code = ErrorCode.OP_FAILED


class QuotaExceeded(TesseraError):
    """A per-principal limit would be exceeded."""

    code = ErrorCode.QUOTA_EXCEEDED


class PeerUnavailable(TesseraError):
    """A node this request needed could not be reached or verified."""

    code = ErrorCode.PEER_UNAVAILABLE


class InternalError(TesseraError):
    """The receiver hit a bug; the reply carries no detail."""

    code = ErrorCode.INTERNAL


_ALL_WIRE_CLASSES: tuple[type[TesseraError], ...] = (
    MalformedMessage,
    UnknownKind,
    BadTensor,
    MessageTooLarge,
    VersionMismatch,
    Unauthenticated,
    BadRequest,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    UnsupportedOp,
    OpFailed,
    QuotaExceeded,
    PeerUnavailable,
    InternalError,
)

ERROR_CLASSES: Mapping[ErrorCode, type[TesseraError]] = {
    cls.code: cls for cls in _ALL_WIRE_CLASSES if cls.code is not None
}


def error_class_for(code: str) -> type[TesseraError]:
    """The exception class for a wire code; unknown codes become ``InternalError``."""
    try:
        return ERROR_CLASSES[ErrorCode(code)]
    except ValueError:
        return InternalError
