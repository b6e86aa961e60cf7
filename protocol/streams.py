"""Streaming tensors larger than one message: chunked uploads and ranged reads.

A tensor above :data:`STREAM_THRESHOLD` bytes travels as
:data:`CHUNK_BYTES` pieces of its raw bytes (each a ``uint8`` tensor
viewing the source's memory), never as one giant message:

- upload: ``put_chunk`` messages carrying the object id, the full dtype and
  shape, the byte ``offset`` and ``last``; the node allocates the tensor on
  the first chunk, copies each chunk in place, and stores the object when
  the last one arrives with every byte accounted for.  Posted like ``put``:
  answered only on failure.
- download: ``get`` with ``max_inline`` set is answered with a
  ``describe_reply`` when the object is larger; the client then asks for
  byte ranges with ``read`` (several in flight) and copies each
  ``read_reply`` into a tensor it allocated.

Both ends hold the tensor once plus a few chunks in flight.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Tuple

from .ids import ObjectId, RequestId
from .kinds import MessageKind, RequestBase

if TYPE_CHECKING:
    import torch

__all__ = [
    "PutChunkRequest",
    "ReadRequest",
    "ReadReply",
    "STREAM_THRESHOLD",
    "CHUNK_BYTES",
    "READ_WINDOW",
]

STREAM_THRESHOLD = 16 * 1024 * 1024
"""Tensors with more bytes than this are streamed in chunks."""

CHUNK_BYTES = 8 * 1024 * 1024
"""Payload bytes per ``put_chunk`` / ``read_reply``."""

READ_WINDOW = 4
"""``read`` requests a client keeps in flight while downloading."""


@dataclass(frozen=True, slots=True)
class PutChunkRequest(RequestBase):
    """Bytes ``[offset, offset + len(data))`` of a tensor being uploaded as ``object_id``.

    ``private`` (as in ``put``) is taken from the chunk marked ``last``.
    """

    KIND: ClassVar[MessageKind] = MessageKind.PUT_CHUNK
    id: RequestId
    object_id: ObjectId
    dtype: str
    shape: Tuple[int, ...]
    offset: int
    data: torch.Tensor
    last: bool
    private: bool = False


@dataclass(frozen=True, slots=True)
class ReadRequest(RequestBase):
    """Bytes ``[offset, offset + nbytes)`` of a stored object, as a ``read_reply``."""

    KIND: ClassVar[MessageKind] = MessageKind.READ
    id: RequestId
    object_id: ObjectId
    offset: int
    nbytes: int

    def reply(self, data: torch.Tensor) -> ReadReply:
        return ReadReply(self.id, data)


@dataclass(frozen=True, slots=True)
class ReadReply:
    KIND: ClassVar[MessageKind] = MessageKind.READ_REPLY
    id: RequestId
    data: torch.Tensor
