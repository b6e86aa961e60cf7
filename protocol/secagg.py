"""Secure aggregation on the wire: FedAvg updates secret-shared among aggregation parties.

A secure round (``PROTOCOL.md`` section 19.4) has four kinds besides ``train``:

- ``secagg_setup`` (trainer -> each aggregation party): open a round id for
  the asking principal, naming the node (id and certificate fingerprint)
  allowed to send the share of each owner index; ``ack``.
- ``secagg_split`` (trainer -> data owner node): split the update the owner
  kept from this round's ``train`` (its :class:`SecureTrain` section) into
  one additive share per party and deliver each; ``ack`` once every party
  acknowledged its share.
- ``secagg_share`` (owner node -> party node): one owner's share, as a PRG
  seed the party expands or as explicit ring tensors; ``ack``.
- ``secagg_sum`` (trainer -> party): which of the named owners' shares are
  here (``check``), or their sum (at most once per round, at least two
  owners); ``secagg_sum_reply``.

The trainer never receives an owner's update or a share of one alone: only
``train_reply`` metrics and, from every party, a sum over two or more
owners.  Pure: no I/O, nothing from ``node/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Mapping, Tuple

from .ids import NodeId, RequestId
from .kinds import MessageKind, RequestBase

if TYPE_CHECKING:
    import torch

__all__ = [
    "SecureTrain",
    "AggregationParty",
    "ShareSender",
    "SecureJob",
    "SecaggSetupRequest",
    "SecaggSplitRequest",
    "SecaggShareRequest",
    "SecaggSumRequest",
    "SecaggSumReply",
    "ROUND_ID_BYTES",
    "MAX_ROUND_ID_BYTES",
    "MAX_AGGREGATION_PARTIES",
    "MAX_ROUND_OWNERS",
    "MAX_SHARE_TENSORS",
    "MAX_SECAGG_PRECISION",
    "DEFAULT_SECAGG_PRECISION",
    "MAX_SECAGG_TIMEOUT",
]

ROUND_ID_BYTES = 16
"""Length of the random round ids a trainer draws (the minimum accepted)."""

MAX_ROUND_ID_BYTES = 32

MAX_ROUND_OWNERS = 256
"""Most owners (datasets) in one secure round; ``MAX_OWNERS`` of a job."""

MAX_AGGREGATION_PARTIES = MAX_ROUND_OWNERS + 1
"""The crypto provider plus one party per owner node."""

MAX_SHARE_TENSORS = 4096
"""Most state tensors in one share (``MAX_STATE_TENSORS`` of a model)."""

MAX_SECAGG_PRECISION = 31
"""Most fractional bits of the fixed-point encoding of an update."""

DEFAULT_SECAGG_PRECISION = 20
"""Fractional bits by default: see ``node.fl.secure`` for the range this leaves."""

MAX_SECAGG_TIMEOUT = 86_400.0
"""Longest a party keeps a round's state, in seconds (one day)."""


@dataclass(frozen=True, slots=True)
class SecureTrain:
    """The ``secure`` section of a ``train``: keep the update for ``secagg_split``, reply without it.

    ``precision`` is the number of fractional bits of the fixed-point
    encoding of the sample-weighted update.
    """

    round: bytes
    precision: int


@dataclass(frozen=True, slots=True)
class AggregationParty:
    """A node that holds shares: where to reach it and which certificate it must present."""

    node: NodeId
    url: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ShareSender:
    """The node (and certificate) allowed to send owner ``owner``'s share."""

    owner: int
    node: NodeId
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SecureJob:
    """A job's secure aggregation settings: the crypto provider party and the precision."""

    crypto_provider: AggregationParty
    precision: int = DEFAULT_SECAGG_PRECISION


@dataclass(frozen=True, slots=True)
class SecaggSetupRequest(RequestBase):
    """Open ``round`` on this party for the asking principal; kept ``timeout`` seconds."""

    KIND: ClassVar[MessageKind] = MessageKind.SECAGG_SETUP
    id: RequestId
    round: bytes
    owners: Tuple[ShareSender, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class SecaggSplitRequest(RequestBase):
    """Share owner ``owner``'s kept update of ``round`` among ``parties`` (this node among them)."""

    KIND: ClassVar[MessageKind] = MessageKind.SECAGG_SPLIT
    id: RequestId
    round: bytes
    owner: int
    parties: Tuple[AggregationParty, ...]


@dataclass(frozen=True, slots=True)
class SecaggShareRequest(RequestBase):
    """Owner ``owner``'s share for this party: a seed to expand, or explicit ``values``.

    ``shapes`` lists the update's tensors in ``state_dict`` order; a seed
    expands tensor ``k`` of that list as AES-CTR stream ``k``.
    """

    KIND: ClassVar[MessageKind] = MessageKind.SECAGG_SHARE
    id: RequestId
    round: bytes
    owner: int
    shapes: Mapping[str, Tuple[int, ...]]
    seed: bytes | None = None
    values: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SecaggSumRequest(RequestBase):
    """Report missing shares of ``owners`` (``check``), or return their sum and forget the round."""

    KIND: ClassVar[MessageKind] = MessageKind.SECAGG_SUM
    id: RequestId
    round: bytes
    owners: Tuple[int, ...]
    check: bool

    def reply(self, missing: Tuple[int, ...], total: Mapping[str, torch.Tensor]) -> SecaggSumReply:
        return SecaggSumReply(self.id, missing, total)


@dataclass(frozen=True, slots=True)
class SecaggSumReply:
    """Owners whose share is not here (then no sum), or this party's summed share."""

    KIND: ClassVar[MessageKind] = MessageKind.SECAGG_SUM_REPLY
    id: RequestId
    missing: Tuple[int, ...]
    sum: Mapping[str, torch.Tensor]
