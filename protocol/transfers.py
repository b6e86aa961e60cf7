"""Node-to-node transfers: ``ptr.move(bob)`` without the data passing the client.

Three requests, each answered with ``ack`` (or an error):

1. client -> destination: ``expect`` reserves ``object_id`` for the client,
   to be filled by ``from_node`` presenting ``from_fingerprint`` with the
   one-time ``ticket``;
2. client -> source: ``transfer`` asks the source to send its object there;
3. source -> destination, over a node-to-node link on which the source
   proved its identity: ``deliver`` fills the reservation.

The source acknowledges ``transfer`` only once the destination acknowledged
``deliver``, so when the client sees the ack the object is in place.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Tuple

from .ids import NodeId, ObjectId, RequestId
from .kinds import MessageKind, RequestBase

if TYPE_CHECKING:
    import torch

__all__ = [
    "ExpectRequest",
    "TransferRequest",
    "DeliverRequest",
    "TICKET_BYTES",
    "MAX_POLICY_PRINCIPALS",
    "WireRestriction",
]

TICKET_BYTES = 32
"""Length of a transfer ticket (random, single use)."""

MAX_POLICY_PRINCIPALS = 4096
"""Most principals one object's policy may name (guardians plus readers, per
restriction); releases beyond it are refused, so every policy fits a ``deliver``."""

WireRestriction = Tuple[str, Tuple[str, ...]]
"""One restriction of an object's policy: a guardian and the readers it allows."""


@dataclass(frozen=True, slots=True)
class ExpectRequest(RequestBase):
    """Reserve ``object_id`` for a delivery from ``from_node``."""

    KIND: ClassVar[MessageKind] = MessageKind.EXPECT
    id: RequestId
    object_id: ObjectId
    from_node: NodeId
    from_fingerprint: str
    ticket: bytes


@dataclass(frozen=True, slots=True)
class TransferRequest(RequestBase):
    """Send stored ``object_id`` to ``to_node`` as ``dest_object_id``."""

    KIND: ClassVar[MessageKind] = MessageKind.TRANSFER
    id: RequestId
    object_id: ObjectId
    to_node: NodeId
    to_url: str
    to_fingerprint: str
    dest_object_id: ObjectId
    ticket: bytes
    delete_source: bool


@dataclass(frozen=True, slots=True)
class DeliverRequest(RequestBase):
    """Fill the reservation ``object_id`` made with ``ticket``, one chunk at a time.

    ``data`` holds bytes ``[offset, offset + len(data))`` of a tensor of
    ``dtype`` and ``shape`` (as in ``put_chunk``); the object is stored when
    the chunk marked ``last`` completes it.  Small objects take one chunk.

    ``restrictions`` and ``shared`` are the object's read policy, carried by
    the last chunk (``None``: an ordinary object of the expecting client).
    The source writes the moving client as ``"@mover"``; the destination
    substitutes the principal that made the ``expect``.
    """

    KIND: ClassVar[MessageKind] = MessageKind.DELIVER
    id: RequestId
    object_id: ObjectId
    ticket: bytes
    dtype: str
    shape: Tuple[int, ...]
    offset: int
    data: torch.Tensor
    last: bool
    restrictions: Tuple[WireRestriction, ...] | None = None
    shared: bool = False
