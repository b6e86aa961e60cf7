"""What pointers and shared tensors need from the node handle they belong to.

Two ``typing.Protocol``\\ s, implemented by the handles and used by
everything that holds a handle without being one:

- :class:`Host`: what every pointer needs, the asyncio client's included
  (its node's identity, posting commands and sends, dropping objects,
  cached metadata);
- :class:`Handle`: a synchronous node as :class:`~node.client.pointer.Pointer`,
  :class:`~node.client.mpc.shared.SharedTensor` and the party group use it:
  blocking gets and grants, node-to-node transfers, secret sharing, and the
  channel's calls with their synchronisation-point rule.  ``in_process`` is
  the capability that tells a node in this very process (moving data
  through the client then costs nothing extra) from one across a network.

:class:`~node.client.handle.NodeHandle` implements :class:`Handle`, and
:class:`~node.client.aio.AsyncRemoteNode` implements :class:`Host`.  This
module imports nothing of ours at run time, so that pointers, shared
tensors and handles can all depend on it without depending on each other.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, TypeVar

if TYPE_CHECKING:
    import torch

    from protocol.ids import NodeId, ObjectId
    from protocol.messages import ObjectInfo, Reply

    from peer.client.core import Build

    from .mpc.shared import SharedTensor
    from .pointer import BasePointer, Pointer

__all__ = ["Host", "Handle"]

R = TypeVar("R", bound="Reply")


class Host(Protocol):
    """The node a pointer's object lives on, as the pointer uses it."""

    @property
    def id(self) -> NodeId: ...

    @property
    def principal(self) -> str:
        """Who the node thinks this client is."""
        ...

    def send(self, tensor: torch.Tensor, private: bool = False) -> Any:
        """Store ``tensor`` on the node (posted); a pointer to it."""
        ...

    def command(self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Post op ``op``; pointers to its results, named before the node answers."""
        ...

    def drop(self, object_id: ObjectId) -> None:
        """The last pointer to an object we own is gone (any thread): delete it with the next batch."""
        ...

    def flush_drops(self) -> None:
        """Post the deletes of dropped objects now."""
        ...

    def object_info(self, pointer: BasePointer) -> ObjectInfo:
        """Dtype, shape, owner of the pointer's object (one round trip; the pointer caches it)."""
        ...


class Handle(Host, Protocol):
    """A synchronous node handle: blocking calls, transfers, secret sharing."""

    @property
    def fingerprint(self) -> str | None:
        """The certificate this connection verified (a VirtualNode's in-process identity; None without TLS)."""
        ...

    @property
    def url(self) -> str:
        """The URL this client dialed (BadRequest for an in-process node)."""
        ...

    @property
    def in_process(self) -> bool:
        """Whether the node runs in this very process (moving data through the client is free)."""
        ...

    def send(self, tensor: torch.Tensor, private: bool = False) -> Pointer: ...

    def command(
        self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Pointer | tuple[Pointer, ...]: ...

    def command_one(self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Pointer:
        """:meth:`command` for an op with one result."""
        ...

    def fetch(self, pointer: BasePointer, delete: bool) -> torch.Tensor:
        """The object's value (a synchronisation point); ``delete`` frees it on the node."""
        ...

    def grant(self, pointer: BasePointer, principal: str) -> None:
        """Let ``principal`` read the object, as far as our restriction on it goes."""
        ...

    def transfer(self, pointer: BasePointer, dest: Handle, delete_source: bool) -> ObjectId:
        """Have the node send the object straight to ``dest``; its id there."""
        ...

    def share_pointer(
        self,
        pointer: Pointer,
        parties: Sequence[Handle],
        crypto_provider: Handle | None,
        options: Mapping[str, Any],
    ) -> SharedTensor:
        """Have the node split the object and deliver each share to its party."""
        ...

    def post(self, build: Build, description: str) -> None:
        """Send a request without waiting; its failure surfaces at the next synchronisation point."""
        ...

    def call(self, build: Build, expected: type[R], description: str) -> R:
        """A synchronisation point: the reply, earlier failures and this request's error raised."""
        ...

    def call_async(self, build: Build) -> concurrent.futures.Future[Reply]:
        """Send now; the future resolves with the raw reply (for windows of calls)."""
        ...

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        """A :meth:`call_async` reply at a synchronisation point (see :meth:`call`)."""
        ...

    def value_of(self, reply: Reply, description: str) -> torch.Tensor:
        """A ``get``'s reply settled into the value (streamed when too large for one message)."""
        ...

    def sync(self) -> None:
        """Wait until the node processed everything sent; raise earlier failures."""
        ...
