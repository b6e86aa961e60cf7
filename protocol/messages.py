"""One frozen dataclass per message kind.

Every message carries an ``id`` (:class:`~protocol.ids.RequestId`).  Replies
are built from their request with ``request.reply(...)`` or
``request.error(...)`` so correlation is never copied by hand.  ``put``,
``delete`` and ``command`` are answered only when they fail, which lets a
client pipeline them; ``sync`` is the barrier that proves everything sent
before it has been processed.  Pure: no I/O, nothing from ``node/``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Tuple, Union

import torch

from .errors import DetailValue, TesseraError
from .ids import NodeId, ObjectId, RequestId
from .values import PointerRef, Value

__all__ = [
    "MessageKind",
    "ObjectInfo",
    "HelloRequest",
    "HelloReply",
    "PutRequest",
    "GetRequest",
    "GetReply",
    "DeleteRequest",
    "CommandRequest",
    "SyncRequest",
    "SyncReply",
    "ListRequest",
    "ListReply",
    "DescribeRequest",
    "DescribeReply",
    "ErrorReply",
    "Request",
    "Reply",
    "Message",
    "NO_REQUEST",
    "REPLY_TYPES",
]

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


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Metadata of a stored tensor, without its data."""

    object_id: ObjectId
    dtype: str
    shape: Tuple[int, ...]


class _RequestBase:
    """Mixin giving every request an ``error`` reply builder."""

    __slots__ = ()
    id: RequestId

    def error(self, exc: TesseraError) -> ErrorReply:
        return ErrorReply.from_exception(self.id, exc)


@dataclass(frozen=True, slots=True)
class HelloRequest(_RequestBase):
    """Opens every connection: who is asking, in which version, with what proof.

    ``version`` is the envelope's protocol version, kept here so the node can
    answer a mismatch precisely.
    """

    KIND: ClassVar[MessageKind] = MessageKind.HELLO
    id: RequestId
    version: int
    client: str
    roles: Tuple[str, ...] = ()
    credentials: Mapping[str, Value] = field(default_factory=dict)

    def reply(
        self, node_id: NodeId, principal: str, roles: Tuple[str, ...], max_message_bytes: int
    ) -> HelloReply:
        return HelloReply(self.id, node_id, principal, roles, max_message_bytes)


@dataclass(frozen=True, slots=True)
class HelloReply:
    """The node accepts: its id, the principal it attributes requests to, its limits."""

    KIND: ClassVar[MessageKind] = MessageKind.HELLO_REPLY
    id: RequestId
    node_id: NodeId
    principal: str
    roles: Tuple[str, ...]
    max_message_bytes: int


@dataclass(frozen=True, slots=True)
class PutRequest(_RequestBase):
    """Store ``value`` under the client-chosen ``object_id``; no reply on success."""

    KIND: ClassVar[MessageKind] = MessageKind.PUT
    id: RequestId
    object_id: ObjectId
    value: torch.Tensor


@dataclass(frozen=True, slots=True)
class GetRequest(_RequestBase):
    """Fetch an object's value; ``delete`` frees it on the node afterwards."""

    KIND: ClassVar[MessageKind] = MessageKind.GET
    id: RequestId
    object_id: ObjectId
    delete: bool = False

    def reply(self, value: torch.Tensor) -> GetReply:
        return GetReply(self.id, value)


@dataclass(frozen=True, slots=True)
class GetReply:
    KIND: ClassVar[MessageKind] = MessageKind.GET_REPLY
    id: RequestId
    value: torch.Tensor


@dataclass(frozen=True, slots=True)
class DeleteRequest(_RequestBase):
    """Free a batch of objects; ids that do not exist are ignored (idempotent)."""

    KIND: ClassVar[MessageKind] = MessageKind.DELETE
    id: RequestId
    object_ids: Tuple[ObjectId, ...]


@dataclass(frozen=True, slots=True)
class CommandRequest(_RequestBase):
    """Run allowlisted ``op`` and store its tensors under ``results``.

    With a ``target`` the op is the tensor method ``target.op(*args, **kwargs)``;
    without, the function ``op(*args, **kwargs)``.  Pointer refs in args and
    kwargs name stored objects.  No reply on success.
    """

    KIND: ClassVar[MessageKind] = MessageKind.COMMAND
    id: RequestId
    op: str
    target: PointerRef | None
    args: Tuple[Value, ...]
    kwargs: Mapping[str, Value]
    results: Tuple[ObjectId, ...]


@dataclass(frozen=True, slots=True)
class SyncRequest(_RequestBase):
    """Barrier: answered once every earlier message on the connection is processed."""

    KIND: ClassVar[MessageKind] = MessageKind.SYNC
    id: RequestId

    def reply(self) -> SyncReply:
        return SyncReply(self.id)


@dataclass(frozen=True, slots=True)
class SyncReply:
    KIND: ClassVar[MessageKind] = MessageKind.SYNC_REPLY
    id: RequestId


@dataclass(frozen=True, slots=True)
class ListRequest(_RequestBase):
    """List the objects the asking principal may see on this node."""

    KIND: ClassVar[MessageKind] = MessageKind.LIST
    id: RequestId

    def reply(self, objects: Tuple[ObjectInfo, ...]) -> ListReply:
        return ListReply(self.id, objects)


@dataclass(frozen=True, slots=True)
class ListReply:
    KIND: ClassVar[MessageKind] = MessageKind.LIST_REPLY
    id: RequestId
    objects: Tuple[ObjectInfo, ...]


@dataclass(frozen=True, slots=True)
class DescribeRequest(_RequestBase):
    """Dtype and shape of the named objects, without moving their data."""

    KIND: ClassVar[MessageKind] = MessageKind.DESCRIBE
    id: RequestId
    object_ids: Tuple[ObjectId, ...]

    def reply(self, objects: Tuple[ObjectInfo, ...]) -> DescribeReply:
        return DescribeReply(self.id, objects)


@dataclass(frozen=True, slots=True)
class DescribeReply:
    KIND: ClassVar[MessageKind] = MessageKind.DESCRIBE_REPLY
    id: RequestId
    objects: Tuple[ObjectInfo, ...]


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
        code = exc.code.value if exc.code is not None else "INTERNAL"
        return cls(request_id, code, exc.message, dict(exc.details))


Request = Union[
    HelloRequest,
    PutRequest,
    GetRequest,
    DeleteRequest,
    CommandRequest,
    SyncRequest,
    ListRequest,
    DescribeRequest,
]
Reply = Union[HelloReply, GetReply, SyncReply, ListReply, DescribeReply, ErrorReply]
Message = Union[Request, Reply]

REPLY_TYPES = (HelloReply, GetReply, SyncReply, ListReply, DescribeReply, ErrorReply)
"""The reply classes, for ``isinstance`` checks."""
