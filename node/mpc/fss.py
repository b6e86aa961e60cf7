"""Two-party DReLU and ReLU of a shared tensor by function secret sharing.

Owns :class:`FssSpec` (the material one comparison needs), :class:`FssDealer`
(the crypto provider of :attr:`~node.mpc.kinds.MaterialKind.FSS` material)
and :func:`party_protocol` (a party's side, a round protocol of
:mod:`node.mpc.rounds`).  Must not import asyncio, websockets, or anything of
``node.server`` / ``node.client``.

Semantics.  A party's share x_b is an int64 ring tensor; x is read as the
signed value of its low ``width`` bits, so the result is exact when
-2^(width-1) <= x < 2^(width-1).  For fixed point with p fractional bits
that is |value| < 2^(width-1-p) (width 32, p 16: |value| < 32768).  DReLU
returns shares of d = [x >= 0] (0 or 1, precision 0); ReLU shares of x * d
(x's precision: no truncation needed).

Material (width w, L = w - 1 DCF levels).  r uniform in Z/2^64 (r_b seeded
for both parties); m = bit w-1 of r, [m] seeded for party 0, explicit for
party 1; the DCF key of alpha = r mod 2^(w-1) and beta = 1 - 2m
(:mod:`node.mpc.dcf`: root seeds seeded, correction words explicit to both
parties); for ReLU also s uniform ([s]_b seeded) and c = -r*s ([c]_0 seeded,
[c]_1 explicit).  Spec number j of a batch uses streams 5j .. 5j+4 of each
party's seed (r, m, s, c, DCF root).

Round 1 (both): open xhat = x + r.  uhat = (xhat + 2^(w-1)) mod 2^w =
(u + r) mod 2^w for u = (x + 2^(w-1)) mod 2^w, whose top bit is [x >= 0].
With p = bit w-1 of uhat and y = uhat mod 2^(w-1) (both public), the top
bit of uhat - r mod 2^w is p xor m xor [y < alpha] (a borrow from the low
bits flips it), so w' = [m] + DCF(y) = m xor [y < alpha] and
d = p + (1 - 2p) w'.  xhat is uniform over Z/2^64 whatever x: the opening
hides x perfectly.

Round 2 (ReLU): Beaver for x * d with a = -r, whose masked value xhat is
already open: open delta = d - s, then
relu_b = c_b + xhat s_b - delta r_b (+ xhat delta for party 0).

Bytes per element each party receives: the DCF's ``24 (w-1) + 24``
(:func:`node.mpc.dcf.dcf_key_bytes`), plus 8 for party 1's [m] and 8 more for
its [c] in a ReLU: 768 + 8/16 for width 32, 1536 + 8/16 for width 64.  All
material is single use: a second opening with the same r reveals the
difference of the two inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import numpy
import torch

from .dcf import DcfKey, dcf_eval, dcf_gen, dcf_key_bytes
from .errors import MaterialError, PartyError, RingError
from .kinds import MaterialKind
from .material import MAX_MATERIAL_ELEMENTS
from .prg import Seed, check_seed, expand_seed, fresh_seed
from .ring import RING_BITS, check_ring, wrap_int
from .rounds import Opened, Opening, RoundProtocol

__all__ = [
    "MIN_WIDTH",
    "FssSpec",
    "FssDealer",
    "fss_stream",
    "split_explicit",
    "party_protocol",
]

MIN_WIDTH = 2
"""A DCF needs at least one input bit below the sign bit."""

Shape = tuple[int, ...]

_R, _M, _S, _C, _ROOT = range(5)
_STREAMS = 5


def fss_stream(spec_index: int, component: int) -> int:
    """The PRG stream of a component (r, m, s, c, DCF root: 0..4) of spec number ``spec_index``."""
    return _STREAMS * spec_index + component


def _check_parties(party: int, n_parties: int) -> None:
    if not isinstance(n_parties, int) or n_parties != 2:
        raise PartyError.for_count(int(n_parties), "an FSS comparison", 2, 2)
    if not isinstance(party, int) or party not in (0, 1):
        raise PartyError.for_index(int(party), 2)


@dataclass(frozen=True, slots=True)
class FssSpec:
    """Material for one DReLU (``relu`` False) or ReLU of a tensor of ``shape``, exact on ``width`` bits."""

    KIND: ClassVar[MaterialKind] = MaterialKind.FSS

    shape: Shape
    width: int
    relu: bool

    def __post_init__(self) -> None:
        dims = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if dims is None or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
        ):
            raise MaterialError(f"FSS shape {self.shape!r} is not a shape", {"what": "FSS shape"})
        count = math.prod(dims)
        if count > MAX_MATERIAL_ELEMENTS:
            raise MaterialError(
                f"FSS shape {list(dims)} has {count} elements, over the limit of "
                f"{MAX_MATERIAL_ELEMENTS}",
                {"what": "FSS shape", "count": count, "limit": MAX_MATERIAL_ELEMENTS},
            )
        object.__setattr__(self, "shape", dims)
        width = self.width
        if not isinstance(width, int) or isinstance(width, bool) or not MIN_WIDTH <= width <= RING_BITS:
            raise MaterialError(
                f"FSS width {width!r} is outside [{MIN_WIDTH}, {RING_BITS}]", {"width": str(width)}
            )
        if not isinstance(self.relu, bool):
            raise MaterialError("FSS relu must be a bool", {})

    @property
    def size(self) -> int:
        """Elements of the shared tensor (one DCF key each)."""
        return math.prod(self.shape)

    @property
    def levels(self) -> int:
        """DCF input bits: the width below the sign bit."""
        return self.width - 1

    def explicit_for(self, party: int, n: int) -> bool:
        """Whether the provider sends ``party`` tensors for this spec (both get the DCF's CWs)."""
        _check_parties(party, n)
        return True

    def explicit_shapes(self, party: int, n: int) -> list[Shape]:
        """The tensors (int64) the provider sends ``party`` for this spec, in order.

        Both: the seed CWs (L, N, 2), the value CWs (L, N), and (3, N) holding
        the left and right control-bit CWs and the final CW; party 1 then
        [m] and, for a ReLU, [c] (of ``shape``).
        """
        _check_parties(party, n)
        n_elements = self.size
        shapes: list[Shape] = [(self.levels, n_elements, 2), (self.levels, n_elements), (3, n_elements)]
        if party == 1:
            shapes.append(self.shape)
            if self.relu:
                shapes.append(self.shape)
        return shapes

    def key_bytes(self, party: int) -> int:
        """Bytes per element this spec sends ``party`` explicitly."""
        return dcf_key_bytes(self.levels) + (8 + 8 * self.relu if party == 1 else 0)


def split_explicit(
    specs: Sequence[FssSpec], party: int, n: int, tensors: Sequence[torch.Tensor]
) -> list[tuple[torch.Tensor, ...]]:
    """A batch's explicit tensors for ``party`` cut per spec (MaterialError on a wrong count)."""
    counts = [len(spec.explicit_shapes(party, n)) for spec in specs]
    if len(tensors) != sum(counts):
        raise MaterialError(
            f"party {party} got {len(tensors)} explicit FSS tensors, expected {sum(counts)}",
            {"party": party, "got": len(tensors), "expected": sum(counts)},
        )
    out: list[tuple[torch.Tensor, ...]] = []
    position = 0
    for count in counts:
        out.append(tuple(tensors[position : position + count]))
        position += count
    return out


@dataclass(frozen=True, slots=True)
class FssDealer:
    """The trusted crypto provider of FSS material; ``seed_source`` defaults to the OS CSPRNG.

    It knows both seeds, hence r: it must never see the opened xhat or delta.
    """

    seed_source: Callable[[], Seed] = field(default=fresh_seed)

    @property
    def kind(self) -> MaterialKind:
        return MaterialKind.FSS

    def seeds(self, n_parties: int) -> tuple[Seed, ...]:
        """Phase 1: one fresh seed per party (exactly two parties)."""
        _check_parties(0, n_parties)
        return (self.seed_source(), self.seed_source())

    def dependent(
        self, specs: Sequence[FssSpec], seeds: Sequence[Seed]
    ) -> dict[int, tuple[torch.Tensor, ...]]:
        """Phase 2: each party's explicit tensors, spec after spec (:meth:`FssSpec.explicit_shapes`)."""
        _check_parties(0, len(seeds))
        first, second = check_seed(seeds[0]), check_seed(seeds[1])
        out: dict[int, list[torch.Tensor]] = {0: [], 1: []}
        for j, spec in enumerate(specs):
            if not isinstance(spec, FssSpec):
                raise MaterialError(f"not an FSS spec: {type(spec).__name__}", {})
            key, m_1, c_1 = _deal_one(spec, j, first, second)
            out[0].extend(key)
            out[1].extend(key)
            out[1].append(m_1)
            if c_1 is not None:
                out[1].append(c_1)
        return {party: tuple(tensors) for party, tensors in out.items()}

    def cost(self, specs: Sequence[FssSpec]) -> int:
        """Elements times DCF levels: the key generation's work."""
        return sum(spec.size * spec.levels for spec in specs)


def _deal_one(
    spec: FssSpec, j: int, first: Seed, second: Seed
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor | None]:
    shape, n = spec.shape, spec.size
    r = expand_seed(first, shape, fss_stream(j, _R)) + expand_seed(second, shape, fss_stream(j, _R))
    m = (r >> (spec.width - 1)) & 1
    m_1 = m - expand_seed(first, shape, fss_stream(j, _M))
    alpha = (r & wrap_int((1 << spec.levels) - 1)).reshape(-1)
    beta = (1 - 2 * m).reshape(-1)
    roots = (_root(first, n, j), _root(second, n, j))
    key = dcf_gen(spec.levels, _words(alpha), _words(beta), roots)
    tail = numpy.concatenate([key.control_cw, key.final_cw[None, :]])
    tensors = tuple(_tensor(array) for array in (key.seed_cw, key.value_cw, tail))
    c_1 = None
    if spec.relu:
        s = expand_seed(first, shape, fss_stream(j, _S)) + expand_seed(second, shape, fss_stream(j, _S))
        c_1 = -(r * s) - expand_seed(first, shape, fss_stream(j, _C))
    return tensors, m_1, c_1


def _root(seed: Seed, n: int, j: int) -> numpy.ndarray:
    return _words(expand_seed(seed, (n, 2), fss_stream(j, _ROOT)))


def _words(tensor: torch.Tensor) -> numpy.ndarray:
    """The int64 tensor's buffer as numpy uint64 (no copy when contiguous)."""
    return tensor.contiguous().numpy().view(numpy.uint64)


def _tensor(array: numpy.ndarray) -> torch.Tensor:
    """The uint64 array's buffer as a torch int64 tensor (no copy)."""
    return torch.from_numpy(numpy.ascontiguousarray(array).view(numpy.int64))


def party_protocol(
    spec: FssSpec,
    party: int,
    n: int,
    seed: Seed,
    explicit: Sequence[torch.Tensor],
    x: torch.Tensor,
    index: int = 0,
) -> RoundProtocol:
    """``party``'s side of the DReLU (1 round) or ReLU (2 rounds) of its share ``x``.

    ``explicit`` are this spec's tensors from the provider
    (:func:`split_explicit` cuts a batch's), ``index`` the spec's position in
    its batch (it selects the seed's streams).  Everything is checked here,
    before the generator is returned: a wrong party count or index
    (PartyError), seed, share or material (SeedError, RingError,
    MaterialError).
    """
    if not isinstance(spec, FssSpec):
        raise MaterialError(f"not an FSS spec: {type(spec).__name__}", {})
    shapes = spec.explicit_shapes(party, n)
    check_seed(seed)
    if not isinstance(index, int) or index < 0:
        raise MaterialError(f"spec index {index!r} is not a batch position", {})
    check_ring(x, "FSS input share")
    if tuple(x.shape) != spec.shape:
        raise RingError.shape_mismatch("FSS input share", spec.shape, tuple(x.shape))
    if len(explicit) != len(shapes):
        raise MaterialError(
            f"party {party} got {len(explicit)} explicit FSS tensors, expected {len(shapes)}",
            {"party": party, "got": len(explicit), "expected": len(shapes)},
        )
    for number, (tensor, shape) in enumerate(zip(explicit, shapes)):
        check_ring(tensor, f"explicit FSS tensor {number}")
        if tuple(tensor.shape) != shape:
            raise RingError.shape_mismatch(f"explicit FSS tensor {number}", shape, tuple(tensor.shape))
    return _protocol(spec, party, seed, tuple(explicit), x, index)


def _protocol(
    spec: FssSpec, party: int, seed: Seed, explicit: tuple[torch.Tensor, ...], x: torch.Tensor, j: int
) -> RoundProtocol:
    shape, n, width = spec.shape, spec.size, spec.width
    seed_cw, value_cw, tail = (_words(t) for t in explicit[:3])
    key = DcfKey(spec.levels, seed_cw, value_cw, tail[:2], tail[2])
    r = expand_seed(seed, shape, fss_stream(j, _R))
    m = explicit[3] if party == 1 else expand_seed(seed, shape, fss_stream(j, _M))
    opened: Opened = yield Opening((x + r,))
    xhat = _opened_sum(opened, 0, shape)
    # uhat = xhat + 2^(w-1) mod 2^w has xhat's low w-1 bits (y) and bit w-1 flipped (p = 1 - q).
    q = xhat >> (width - 1)
    q &= 1
    y = (xhat & wrap_int((1 << spec.levels) - 1)).reshape(-1)
    d = _tensor(dcf_eval(party, key, _root(seed, n, j), _words(y))).view(shape)
    d += m  # w' = [m] + DCF(y); d = p + (1 - 2p) w' = (1 - q) + (2q - 1) w'
    p = 1 - q if party == 0 else None
    d *= q.mul_(2).sub_(1)
    if p is not None:
        d += p
    if not spec.relu:
        return d
    s = expand_seed(seed, shape, fss_stream(j, _S))
    c = explicit[4] if party == 1 else expand_seed(seed, shape, fss_stream(j, _C))
    opened = yield Opening((d - s,))
    delta = _opened_sum(opened, 0, shape)
    # relu_b = c_b + xhat s_b - delta r_b (+ xhat delta for party 0), in place on fresh tensors
    out = s.mul_(xhat)
    out += c
    if party == 0:
        out.addcmul_(xhat, delta)
    out -= delta.mul_(r)
    return out


def _opened_sum(opened: Opened, position: int, shape: Shape) -> torch.Tensor:
    """The sum of both parties' tensor ``position`` of a round, checked (RingError)."""
    if len(opened) != 2:
        raise PartyError.for_count(len(opened), "an FSS comparison", 2, 2)
    tensors = []
    for number, values in enumerate(opened):
        if len(values) <= position:
            raise RingError(f"party {number} opened no tensor {position}", {"party": number})
        tensor = check_ring(values[position], f"opened tensor of party {number}")
        if tuple(tensor.shape) != shape:
            raise RingError.shape_mismatch(f"opened tensor of party {number}", shape, tuple(tensor.shape))
        tensors.append(tensor)
    return torch.add(tensors[0], tensors[1])
