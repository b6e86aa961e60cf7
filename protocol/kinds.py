"""Message kinds, the request mixin, and the two replies every kind may get.

Split out of :mod:`protocol.messages` so the core, discovery and transfer
message modules can share them without importing each other.  Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

from .errors import DetailValue, ErrorCode, LocalProtocolError, TesseraError
from .ids import RequestId

__all__ = ["MessageKind", "RequestBase", "ErrorReply", "AckReply", "NO_REQUEST"]

NO_REQUEST = RequestId(0)
"""Request id of an error that answers no decodable request."""


class MessageKind(str, enum.Enum):
    """The ``kind`` field of every message."""

    HELLO = "hello"
    HELLO_REPLY = "hello_reply"
    PUT = "put"
    GET = "get"
    GET_REPLY = "get_reply"
    DELETE = "delete"
    COMMAND = "command"
    SYNC = "sync"
    SYNC_REPLY = "sync_reply"
    LIST = "list"
    LIST_REPLY = "list_reply"
    DESCRIBE = "describe"
    DESCRIBE_REPLY = "describe_reply"
    ERROR = "error"
    ACK = "ack"
    REGISTER = "register"
    REGISTER_REPLY = "register_reply"
    HEARTBEAT = "heartbeat"
    DEREGISTER = "deregister"
    NODES = "nodes"
    NODES_REPLY = "nodes_reply"
    EXPECT = "expect"
    TRANSFER = "transfer"
    DELIVER = "deliver"
    PUT_CHUNK = "put_chunk"
    READ = "read"
    READ_REPLY = "read_reply"
    RELEASE = "release"
    MPC_SPLIT = "mpc_split"
    MPC_SPLIT_REPLY = "mpc_split_reply"
    MPC_DEAL = "mpc_deal"
    MPC_MATERIAL = "mpc_material"
    MPC_STEP = "mpc_step"
    MPC_OPEN = "mpc_open"
    TRAIN = "train"
    TRAIN_REPLY = "train_reply"
    JOB_SUBMIT = "job_submit"
    JOB_SUBMIT_REPLY = "job_submit_reply"
    JOB_STATUS = "job_status"
    JOB_STATUS_REPLY = "job_status_reply"
    JOB_RESULT = "job_result"
    JOB_RESULT_REPLY = "job_result_reply"
    SECAGG_SETUP = "secagg_setup"
    SECAGG_SPLIT = "secagg_split"
    SECAGG_SHARE = "secagg_share"
    SECAGG_SUM = "secagg_sum"
    SECAGG_SUM_REPLY = "secagg_sum_reply"


class RequestBase:
    """Mixin giving every request an ``error`` reply builder."""

    __slots__ = ()
    id: RequestId

    def error(self, exc: TesseraError) -> ErrorReply:
        return ErrorReply.from_exception(self.id, exc)

    def ack(self) -> AckReply:
        return AckReply(self.id)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A request failed.  ``id`` is the request's, or 0 if it could not be read."""

    KIND: ClassVar[MessageKind] = MessageKind.ERROR
    id: RequestId
    code: str
    message: str
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, request_id: RequestId, exc: TesseraError) -> ErrorReply:
        """The reply reporting ``exc``; an error without a wire code is ``INTERNAL``.

        A :class:`~protocol.errors.LocalProtocolError` (this side failed to
        encode a message) is a bare ``INTERNAL``: the peer is not at fault
        and learns nothing of what this side was sending.
        """
        if isinstance(exc, LocalProtocolError):
            return cls(request_id, ErrorCode.INTERNAL.value, "internal error", {})
        code = exc.code.value if exc.code is not None else ErrorCode.INTERNAL.value
        return cls(request_id, code, exc.message, _wire_details(exc.details))


def _wire_details(details: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    """Details as msgpack can carry them: integers beyond 64 bits become strings.

    A hostile header can declare sizes like 2**64; the error describing it
    must still be sendable.
    """
    return {
        key: str(value)
        if isinstance(value, int) and not -(2**63) <= value < 2**64
        else value
        for key, value in details.items()
    }


@dataclass(frozen=True, slots=True)
class AckReply:
    """The request succeeded and has nothing to return (heartbeat, transfer...)."""

    KIND: ClassVar[MessageKind] = MessageKind.ACK
    id: RequestId
