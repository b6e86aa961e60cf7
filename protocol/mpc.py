"""Secret sharing on the wire: splitting, dealing, Beaver steps and peer-to-peer openings.

Six kinds (section 19 of ``PROTOCOL.md``):

- ``mpc_split`` (client -> data owner): split a stored object into additive
  shares and deliver each straight to its party, filling reservations the
  client made there with ``expect``; answered ``mpc_split_reply`` (dtype,
  shape and fractional bits of the shared value) once every share is in
  place.
- ``mpc_deal`` (client -> crypto provider): deal the correlated randomness
  of one session (Beaver triples, truncation masks) to the parties,
  node to node, as ``mpc_material``: a PRG seed for every party and, for
  the last party only, the dependent tensors explicitly.  Posted.
- ``mpc_step`` (client -> each party): run one step of a session: a
  Beaver product (``mul``, ``matmul``, ``conv2d``) and/or a truncation, or
  a comparison (``drelu``: shares of [x >= 0]; ``relu``: of x * [x >= 0])
  by one of two routes (:class:`CompareRoute`), on the party's shares,
  exchanging masked values with the other parties as ``mpc_open``; the
  result share is stored under a client-chosen id.  Posted.
- ``mpc_material`` (crypto provider -> party) and ``mpc_open`` (party ->
  party): node-to-node only; a node refuses them from anything but a node
  that proved its identity, and a step uses them only if they come from the
  node and certificate the client named for that session.

The client never receives a masked value.  Pure: no I/O, nothing from
``node/``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Tuple, Union

from .ids import NodeId, ObjectId, RequestId
from .kinds import MessageKind, RequestBase

if TYPE_CHECKING:
    import torch

__all__ = [
    "SESSION_BYTES",
    "MAX_SESSION_BYTES",
    "MAX_PARTIES",
    "MAX_SPECS",
    "MAX_PRECISION_BITS",
    "MAX_TRUNCATION_BITS",
    "MAX_STEP_TIMEOUT",
    "DEFAULT_STEP_TIMEOUT",
    "MATERIAL_TTL",
    "MAX_OPEN_ERROR_CHARS",
    "MIN_COMPARE_WIDTH",
    "MAX_COMPARE_WIDTH",
    "COMPARE_ROUND_BASE",
    "MAX_COMPARE_ROUNDS",
    "MAX_OPEN_VALUES",
    "BilinearKind",
    "StepOp",
    "TruncationScheme",
    "CompareRoute",
    "COMPARE_OPS",
    "OpenRound",
    "PartyAddress",
    "DealerRef",
    "SplitTarget",
    "WireConv",
    "WireTriple",
    "WireTruncation",
    "WireCompare",
    "WireSpec",
    "MpcSplitRequest",
    "MpcSplitReply",
    "MpcDealRequest",
    "MpcMaterialRequest",
    "MpcStepRequest",
    "MpcOpenRequest",
]

SESSION_BYTES = 16
"""Length of the session ids the Python client draws (128 bits, from ``secrets``)."""

MAX_SESSION_BYTES = 32
"""Longest session id accepted; at least SESSION_BYTES."""

MAX_PARTIES = 64
"""Most computing parties in one sharing."""

MAX_SPECS = 64
"""Most material specs in one ``mpc_deal`` / ``mpc_material``."""

MAX_PRECISION_BITS = 31
"""Most fractional bits a fixed-point encoding may use."""

MAX_TRUNCATION_BITS = 62
"""Most bits one truncation may drop."""

MAX_STEP_TIMEOUT = 600.0
"""Longest a party waits (seconds) for material or for a peer's opening."""

DEFAULT_STEP_TIMEOUT = 60.0
"""What the Python client asks for unless told otherwise."""

MATERIAL_TTL = 600.0
"""Seconds a party keeps an unclaimed ``mpc_material`` letter (material dealt ahead of its step).

Other early letters (``mpc_open``) wait ``LETTER_TTL``, 120 s; material may
be dealt minutes before use (``node.preprocess``), so it waits longer.
"""

MAX_OPEN_ERROR_CHARS = 512
"""Longest abort reason an ``mpc_open`` may carry."""

MIN_COMPARE_WIDTH = 2
"""Fewest low bits of a share a comparison reads (``width``)."""

MAX_COMPARE_WIDTH = 64
"""Most low bits of a share a comparison reads: the whole ring."""

COMPARE_ROUND_BASE = 2
"""``mpc_open.round`` of a comparison's first opening (round k is ``COMPARE_ROUND_BASE + k``)."""

MAX_COMPARE_ROUNDS = 64
"""Most openings one comparison step may take (so ``round`` < COMPARE_ROUND_BASE + 64)."""

MAX_OPEN_VALUES = 16
"""Most tensors one ``mpc_open`` carries."""


class BilinearKind(str, enum.Enum):
    """The products a Beaver triple exists for."""

    MUL = "mul"
    MATMUL = "matmul"
    CONV2D = "conv2d"


class StepOp(str, enum.Enum):
    """What an ``mpc_step`` computes: a Beaver product, or a truncation alone."""

    MUL = "mul"
    MATMUL = "matmul"
    CONV2D = "conv2d"
    TRUNCATE = "truncate"
    DRELU = "drelu"
    """Shares of the bit [x >= 0] (0 or 1, no fractional bits)."""
    RELU = "relu"
    """Shares of x * [x >= 0], with x's encoding."""


COMPARE_OPS = frozenset({StepOp.DRELU, StepOp.RELU})
"""The steps that compare (``width`` and ``route`` required, material a :class:`WireCompare`)."""


class CompareRoute(str, enum.Enum):
    """How a comparison step is computed (and which material it takes).

    ``fss``: function secret sharing (distributed comparison function keys),
    exactly 2 parties, 1 opening for ``drelu``, 2 for ``relu``.  ``a2b``:
    arithmetic-to-binary conversion with binary Beaver triples, any number
    of parties, about log2(width) + n openings.
    """

    FSS = "fss"
    A2B = "a2b"


class TruncationScheme(str, enum.Enum):
    """``local``: SecureML, 2 parties, no round.  ``dealer``: masked opening, any n."""

    LOCAL = "local"
    DEALER = "dealer"


class OpenRound(enum.IntEnum):
    """Which opening of a step an ``mpc_open`` carries (``COMPARE_ROUND_BASE + k``: a comparison's round k)."""

    BEAVER = 0
    """(epsilon_i, delta_i) of a Beaver product."""
    TRUNCATION = 1
    """The masked share c_i of the dealer truncation."""


@dataclass(frozen=True, slots=True)
class PartyAddress:
    """A party as the client verified it: node id, URL it dialed, certificate fingerprint."""

    node: NodeId
    url: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class DealerRef:
    """The crypto provider a party accepts material from for one session."""

    node: NodeId
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SplitTarget:
    """Where one share goes: a party and the reservation (id, ticket) the client made there."""

    node: NodeId
    url: str
    fingerprint: str
    object_id: ObjectId
    ticket: bytes


@dataclass(frozen=True, slots=True)
class WireConv:
    """conv2d's public parameters."""

    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass(frozen=True, slots=True)
class WireTriple:
    """A Beaver triple for ``op(x, y)`` with operands of these shapes."""

    op: BilinearKind
    x_shape: Tuple[int, ...]
    y_shape: Tuple[int, ...]
    conv: WireConv | None = None


@dataclass(frozen=True, slots=True)
class WireTruncation:
    """Masks for truncating a tensor of ``shape`` by ``bits`` bits (dealer scheme)."""

    shape: Tuple[int, ...]
    bits: int


@dataclass(frozen=True, slots=True)
class WireCompare:
    """Material for one comparison step of ``route`` on a tensor of ``shape``.

    ``width``: the low bits of the shared value read as a signed integer;
    ``relu``: material for x * [x >= 0] rather than the bit alone.
    """

    shape: Tuple[int, ...]
    width: int
    relu: bool
    route: CompareRoute


WireSpec = Union[WireTriple, WireTruncation, WireCompare]


@dataclass(frozen=True, slots=True)
class MpcSplitRequest(RequestBase):
    """Encode stored ``object_id`` with ``precision`` fractional bits, split, deliver the shares.

    Share i goes to ``parties[i]``; integer tensors are shared exactly
    (0 fractional bits, whatever ``precision`` says).
    """

    KIND: ClassVar[MessageKind] = MessageKind.MPC_SPLIT
    id: RequestId
    object_id: ObjectId
    precision: int
    parties: Tuple[SplitTarget, ...]

    def reply(self, dtype: str, shape: Tuple[int, ...], precision: int) -> MpcSplitReply:
        return MpcSplitReply(self.id, dtype, shape, precision)


@dataclass(frozen=True, slots=True)
class MpcSplitReply:
    """Every share is in place: the shared value's dtype, shape and fractional bits."""

    KIND: ClassVar[MessageKind] = MessageKind.MPC_SPLIT_REPLY
    id: RequestId
    dtype: str
    shape: Tuple[int, ...]
    precision: int


@dataclass(frozen=True, slots=True)
class MpcDealRequest(RequestBase):
    """Deal the material of ``specs`` for ``session`` to ``parties`` (index i is party i)."""

    KIND: ClassVar[MessageKind] = MessageKind.MPC_DEAL
    id: RequestId
    session: bytes
    parties: Tuple[PartyAddress, ...]
    specs: Tuple[WireSpec, ...]


@dataclass(frozen=True, slots=True)
class MpcMaterialRequest(RequestBase):
    """Party ``party``'s material for ``session``: its seed, or its explicit tensors.

    The dealer sends every party one message with ``seed`` set and
    ``explicit`` empty, then a second one with ``seed`` nil and the
    dependent tensors to each party that needs some (the last party for
    Beaver specs; for a ``compare`` spec whoever its route names), so
    parties can mask before the dealer has computed the products.
    """

    KIND: ClassVar[MessageKind] = MessageKind.MPC_MATERIAL
    id: RequestId
    session: bytes
    party: int
    n_parties: int
    specs: Tuple[WireSpec, ...]
    seed: bytes | None
    explicit: Tuple[torch.Tensor, ...] = ()


@dataclass(frozen=True, slots=True)
class MpcStepRequest(RequestBase):
    """Run one step of ``session`` as party ``party`` of ``parties``.

    ``op`` of the shares ``x`` and ``y`` (``y`` nil for ``truncate``,
    ``drelu`` and ``relu``), then, if ``bits`` > 0, truncation by ``bits``
    with ``truncation``'s scheme; the result share is stored as ``result``.
    ``dealer`` (nil only for a local truncation alone) is the crypto
    provider whose material is accepted; ``timeout`` bounds every wait, in
    seconds.  ``width`` and ``route``: a comparison's (0 and nil otherwise).
    """

    KIND: ClassVar[MessageKind] = MessageKind.MPC_STEP
    id: RequestId
    session: bytes
    party: int
    parties: Tuple[PartyAddress, ...]
    dealer: DealerRef | None
    op: StepOp
    x: ObjectId
    y: ObjectId | None
    conv: WireConv | None
    bits: int
    truncation: TruncationScheme
    result: ObjectId
    timeout: float = DEFAULT_STEP_TIMEOUT
    width: int = 0
    route: CompareRoute | None = None


@dataclass(frozen=True, slots=True)
class MpcOpenRequest(RequestBase):
    """Party ``party``'s masked values for round ``round`` of ``session``, or why it aborted.

    ``values``: (epsilon_i, delta_i) for the Beaver round (0), (c_i,) for
    the truncation round (1), a comparison's round-k tensors for round
    ``COMPARE_ROUND_BASE + k``; empty when ``abort`` says why the sender
    gave up.
    """

    KIND: ClassVar[MessageKind] = MessageKind.MPC_OPEN
    id: RequestId
    session: bytes
    party: int
    round: int
    values: Tuple[torch.Tensor, ...]
    abort: str | None = None
