"""One frozen dataclass per message kind.

Every message carries an ``id`` (:class:`~protocol.ids.RequestId`).  Replies
are built from their request with ``request.reply(...)`` or
``request.error(...)`` so correlation is never copied by hand.  ``put``,
``delete`` and ``command`` are answered only when they fail, which lets a
client pipeline them; ``sync`` is the barrier that proves everything sent
before it has been processed.  Pure: no I/O, nothing from ``node/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Mapping, Tuple, Union, get_args

from .discovery import (
    DeregisterRequest,
    HeartbeatRequest,
    NodesReply,
    NodesRequest,
    RegisterReply,
    RegisterRequest,
)
from .federated import (
    JobResultReply,
    JobResultRequest,
    JobStatusReply,
    JobStatusRequest,
    JobSubmitReply,
    JobSubmitRequest,
    TrainReply,
    TrainRequest,
)
from .ids import NodeId, ObjectId, RequestId
from .kinds import NO_REQUEST, AckReply, ErrorReply, MessageKind, RequestBase
from .mpc import (
    MpcDealRequest,
    MpcMaterialRequest,
    MpcOpenRequest,
    MpcSplitReply,
    MpcSplitRequest,
    MpcStepRequest,
)
from .secagg import (
    SecaggSetupRequest,
    SecaggShareRequest,
    SecaggSplitRequest,
    SecaggSumReply,
    SecaggSumRequest,
)
from .streams import PutChunkRequest, ReadReply, ReadRequest
from .transfers import DeliverRequest, ExpectRequest, TransferRequest
from .values import PointerRef, Value

if TYPE_CHECKING:
    import torch

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
    "AckReply",
    "RegisterRequest",
    "RegisterReply",
    "HeartbeatRequest",
    "DeregisterRequest",
    "NodesRequest",
    "NodesReply",
    "ExpectRequest",
    "TransferRequest",
    "DeliverRequest",
    "PutChunkRequest",
    "ReadRequest",
    "ReadReply",
    "ReleaseRequest",
    "MpcSplitRequest",
    "MpcSplitReply",
    "MpcDealRequest",
    "MpcMaterialRequest",
    "MpcStepRequest",
    "MpcOpenRequest",
    "TrainRequest",
    "TrainReply",
    "JobSubmitRequest",
    "JobSubmitReply",
    "JobStatusRequest",
    "JobStatusReply",
    "JobResultRequest",
    "JobResultReply",
    "SecaggSetupRequest",
    "SecaggSplitRequest",
    "SecaggShareRequest",
    "SecaggSumRequest",
    "SecaggSumReply",
    "Request",
    "Reply",
    "Message",
    "NO_REQUEST",
    "REPLY_TYPES",
]

@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Metadata of a stored tensor, without its data, as the asking principal sees it."""

    object_id: ObjectId
    dtype: str
    shape: Tuple[int, ...]
    owner: str = ""
    """The principal that owns it ("" from a peer that does not say)."""
    readable: bool = True
    """Whether the asking principal may ``get`` it."""
    private: bool = False
    """A data owner's private dataset: visible to everyone for computation."""


@dataclass(frozen=True, slots=True)
class HelloRequest(RequestBase):
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
        self,
        node_id: NodeId,
        principal: str,
        roles: Tuple[str, ...],
        max_message_bytes: int,
        membership: bytes | None = None,
    ) -> HelloReply:
        return HelloReply(self.id, node_id, principal, roles, max_message_bytes, membership)


@dataclass(frozen=True, slots=True)
class HelloReply:
    """The node accepts: its id, the principal it attributes requests to, its limits."""

    KIND: ClassVar[MessageKind] = MessageKind.HELLO_REPLY
    id: RequestId
    node_id: NodeId
    principal: str
    roles: Tuple[str, ...]
    max_message_bytes: int
    membership: bytes | None = None
    """A member server's answer to a member's node proof (PROTOCOL.md 6.2): dialing
    nodes send nothing before checking it."""


@dataclass(frozen=True, slots=True)
class PutRequest(RequestBase):
    """Store ``value`` under the client-chosen ``object_id``; no reply on success."""

    KIND: ClassVar[MessageKind] = MessageKind.PUT
    id: RequestId
    object_id: ObjectId
    value: torch.Tensor
    private: bool = False
    """Store it as a private dataset: others may compute on it, nobody else may read it."""


@dataclass(frozen=True, slots=True)
class GetRequest(RequestBase):
    """Fetch an object's value; ``delete`` frees it on the node afterwards."""

    KIND: ClassVar[MessageKind] = MessageKind.GET
    id: RequestId
    object_id: ObjectId
    delete: bool = False
    max_inline: int = 0
    """If non-zero and the object has more bytes, the node answers with a
    ``describe_reply`` instead and the client streams it with ``read``."""

    def reply(self, value: torch.Tensor) -> GetReply:
        return GetReply(self.id, value)


@dataclass(frozen=True, slots=True)
class GetReply:
    KIND: ClassVar[MessageKind] = MessageKind.GET_REPLY
    id: RequestId
    value: torch.Tensor


@dataclass(frozen=True, slots=True)
class DeleteRequest(RequestBase):
    """Free a batch of objects; ids that do not exist are ignored (idempotent)."""

    KIND: ClassVar[MessageKind] = MessageKind.DELETE
    id: RequestId
    object_ids: Tuple[ObjectId, ...]


@dataclass(frozen=True, slots=True)
class CommandRequest(RequestBase):
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
class SyncRequest(RequestBase):
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
class ListRequest(RequestBase):
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
class DescribeRequest(RequestBase):
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
class ReleaseRequest(RequestBase):
    """Allow ``principal`` to read ``object_id``, as far as the asker's own restriction goes."""

    KIND: ClassVar[MessageKind] = MessageKind.RELEASE
    id: RequestId
    object_id: ObjectId
    principal: str


Request = Union[
    HelloRequest,
    MpcSplitRequest,
    MpcDealRequest,
    MpcMaterialRequest,
    MpcStepRequest,
    MpcOpenRequest,
    PutRequest,
    GetRequest,
    DeleteRequest,
    CommandRequest,
    SyncRequest,
    ListRequest,
    DescribeRequest,
    RegisterRequest,
    HeartbeatRequest,
    DeregisterRequest,
    NodesRequest,
    ExpectRequest,
    TransferRequest,
    DeliverRequest,
    PutChunkRequest,
    ReadRequest,
    ReleaseRequest,
    TrainRequest,
    JobSubmitRequest,
    JobStatusRequest,
    JobResultRequest,
    SecaggSetupRequest,
    SecaggSplitRequest,
    SecaggShareRequest,
    SecaggSumRequest,
]
Reply = Union[
    HelloReply,
    MpcSplitReply,
    GetReply,
    SyncReply,
    ListReply,
    DescribeReply,
    ErrorReply,
    AckReply,
    RegisterReply,
    NodesReply,
    ReadReply,
    TrainReply,
    JobSubmitReply,
    JobStatusReply,
    JobResultReply,
    SecaggSumReply,
]
Message = Union[Request, Reply]

REPLY_TYPES: Tuple[type[Reply], ...] = get_args(Reply)
"""The reply classes, for ``isinstance`` checks."""
