"""Beaver mul, matmul and conv2d on shares against a plaintext torch reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from node.mpc.beaver import Masked, finish, mask, open_masked
from node.mpc.dealer import Dealer
from node.mpc.encoding import FixedPointEncoder, encoder_for
from node.mpc.errors import PartyError, RingError
from node.mpc.material import TripleShares, TripleSpec, as_triple, expand_material
from node.mpc.prg import random_ring
from node.mpc.ring import BilinearOp, ConvParams, apply_bilinear
from node.mpc.shares import reconstruct, split
from tests.node.mpc.parties import beaver, fixed_product, reveal_float, share_float
from tests.node.mpc.stats import looks_uniform

BITS = 16
ULP = 2.0**-BITS


def log_uniform(*shape: int, low: float = 1e-3, high: float = 1e3) -> torch.Tensor:
    """Random signed values whose magnitudes are spread evenly over [low, high] in log scale."""
    exponent = torch.empty(shape, dtype=torch.float64).uniform_(
        torch.tensor(low).log10().item(), torch.tensor(high).log10().item()
    )
    sign = torch.where(torch.rand(shape) < 0.5, -1.0, 1.0).to(torch.float64)
    return sign * 10.0**exponent


def _plain(op: BilinearOp, a: torch.Tensor, b: torch.Tensor, conv: ConvParams | None) -> torch.Tensor:
    if op is BilinearOp.MUL:
        return a * b
    if op is BilinearOp.MATMUL:
        return a @ b
    p = conv or ConvParams()
    out: torch.Tensor = F.conv2d(
        a, b, stride=p.stride, padding=p.padding, dilation=p.dilation, groups=p.groups
    )
    return out


def bilinear_tolerance(
    op: BilinearOp, x: torch.Tensor, y: torch.Tensor, conv: ConvParams | None = None
) -> torch.Tensor:
    """Error bound of a fixed-point op(x, y): encoding error of each operand, plus 1 ulp.

    enc(x) = x + e with |e| <= ulp/2, so op(enc x, enc y) - op(x, y) is bounded by
    op(|x|, ulp/2) + op(ulp/2, |y|) + op(ulp/2, ulp/2) termwise; truncation adds < 1 ulp.
    """
    hx, hy = torch.full_like(x, ULP / 2), torch.full_like(y, ULP / 2)
    return (
        _plain(op, x.abs(), hy, conv)
        + _plain(op, hx, y.abs(), conv)
        + _plain(op, hx, hy, conv)
        + ULP * 1.0001
    )


@pytest.mark.parametrize(("n", "local"), [(2, False), (3, False), (2, True)])
def test_elementwise_mul_matches_plaintext(n: int, local: bool) -> None:
    """Fixed-point x * y over magnitudes 1e-3 .. 1e3 is within the derived tolerance."""
    x, y = log_uniform(20_000), log_uniform(20_000)
    got = reveal_float(fixed_product(BilinearOp.MUL, share_float(x, n), share_float(y, n), local=local))
    assert bool(((got - x * y).abs() <= bilinear_tolerance(BilinearOp.MUL, x, y)).all())


@pytest.mark.parametrize("n", [2, 3])
def test_mul_broadcasts(n: int) -> None:
    """x of shape (4, 5) times y of shape (5,) broadcasts like torch."""
    x, y = log_uniform(4, 5), log_uniform(5)
    got = reveal_float(fixed_product(BilinearOp.MUL, share_float(x, n), share_float(y, n)))
    assert bool(((got - x * y).abs() <= bilinear_tolerance(BilinearOp.MUL, x, y)).all())


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("high", [1.0, 1e3])
def test_matmul_matches_plaintext(n: int, high: float) -> None:
    """Fixed-point x @ y (batched too) is within the derived tolerance."""
    for xs, ys in (((17, 24), (24, 9)), ((2, 5, 8), (2, 8, 3))):
        x, y = log_uniform(*xs, high=high), log_uniform(*ys, high=high)
        got = reveal_float(fixed_product(BilinearOp.MATMUL, share_float(x, n), share_float(y, n)))
        assert bool(((got - x @ y).abs() <= bilinear_tolerance(BilinearOp.MATMUL, x, y)).all())


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize(
    "conv",
    [ConvParams(), ConvParams(stride=(2, 2), padding=(1, 1)), ConvParams(groups=2, dilation=(2, 1))],
)
def test_conv2d_matches_plaintext(n: int, conv: ConvParams) -> None:
    """Fixed-point conv2d is within the derived tolerance of torch's float64 conv2d."""
    x, w = log_uniform(2, 4, 8, 8, high=1e2), log_uniform(6, 4 // conv.groups, 3, 3, high=1e2)
    got = reveal_float(fixed_product(BilinearOp.CONV2D, share_float(x, n), share_float(w, n), conv=conv))
    want = _plain(BilinearOp.CONV2D, x, w, conv)
    assert bool(((got - want).abs() <= bilinear_tolerance(BilinearOp.CONV2D, x, w, conv)).all())


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("op", list(BilinearOp))
def test_ring_products_are_exact(n: int, op: BilinearOp) -> None:
    """On full-range ring values, Beaver's result equals op(x, y) mod 2^64 exactly."""
    shapes = {
        BilinearOp.MUL: ((6, 7), (7,)),
        BilinearOp.MATMUL: ((6, 7), (7, 3)),
        BilinearOp.CONV2D: ((1, 2, 5, 5), (3, 2, 2, 2)),
    }
    x, y = random_ring(shapes[op][0]), random_ring(shapes[op][1])
    assert torch.equal(reconstruct(beaver(op, split(x, n), split(y, n))), apply_bilinear(op, x, y))


@pytest.mark.parametrize("n", [2, 3])
def test_integer_tensors_multiply_exactly(n: int) -> None:
    """Integer tensors are shared with scale 1 and multiply exactly, no truncation."""
    x = torch.randint(-1000, 1000, (30,), dtype=torch.int32)
    y = torch.randint(-1000, 1000, (30,), dtype=torch.int32)
    enc = encoder_for(x)
    z = reconstruct(beaver(BilinearOp.MUL, split(enc.encode(x), n), split(enc.encode(y), n)))
    assert torch.equal(enc.decode(z, torch.int32), x * y)


def test_integer_times_fixed_point_needs_no_truncation() -> None:
    """An integer (scale 1) times a fixed-point value is fixed point with the same bits."""
    k = torch.tensor([3, -2, 7])
    v = torch.tensor([0.5, 1.25, -3.75])
    ks = split(encoder_for(k).encode(k), 3)
    z = beaver(BilinearOp.MUL, ks, share_float(v, 3))
    assert torch.equal(reveal_float(z), (k * v).double())


def _triples(spec: TripleSpec, n: int) -> list[TripleShares]:
    out = []
    for bundle in Dealer().deal([spec], n):
        (m,) = expand_material(bundle)
        out.append(as_triple(m))
    return out


def test_peer_input_is_checked() -> None:
    """Wrong shapes or dtypes in masks, openings or party indices raise typed errors."""
    spec = TripleSpec(BilinearOp.MUL, (3,), (3,))
    triple = _triples(spec, 2)[0]
    x = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(RingError):
        mask(torch.zeros(4, dtype=torch.int64), x, triple.a, triple.b)
    with pytest.raises(RingError):
        mask(x, torch.zeros(3), triple.a, triple.b)
    good = mask(x, x, triple.a, triple.b)
    with pytest.raises(RingError, match="epsilon from party 1"):
        open_masked([good, Masked(torch.zeros(2, dtype=torch.int64), x)], spec)
    with pytest.raises(RingError, match="delta from party 1"):
        open_masked([good, Masked(x, torch.zeros(3, dtype=torch.float32))], spec)
    with pytest.raises(PartyError):
        open_masked([good], spec)
    with pytest.raises(PartyError):
        finish(spec, good, triple, 2, 2)


def test_openings_reveal_only_uniform_values() -> None:
    """eps = x - a is uniform even for x = 0 (a single-use uniform mask)."""
    n, size = 2, 1 << 16
    spec = TripleSpec(BilinearOp.MUL, (size,), (size,))
    zeros = split(torch.zeros(size, dtype=torch.int64), n)
    triples = _triples(spec, n)
    opened = open_masked([mask(s, s, t.a, t.b) for s, t in zip(zeros, triples)], spec)
    assert looks_uniform(opened.epsilon) and looks_uniform(opened.delta)


def test_encoder_precision_is_per_call() -> None:
    """Products work at 8 and 24 fractional bits too, with matching truncation."""
    x, y = log_uniform(1000, high=10.0), log_uniform(1000, high=10.0)
    for bits in (8, 24):
        enc = FixedPointEncoder(bits)
        xs, ys = split(enc.encode(x), 3), split(enc.encode(y), 3)
        got = enc.decode(reconstruct(fixed_product(BilinearOp.MUL, xs, ys, bits=bits)), torch.float64)
        ulp = 2.0**-bits
        tol = (x.abs() + y.abs()) * ulp / 2 + ulp * 1.01 + ulp * ulp
        assert bool(((got - x * y).abs() <= tol).all())
