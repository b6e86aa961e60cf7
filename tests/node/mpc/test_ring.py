"""Ring arithmetic mod 2^64: exactness of the int64 kernels, wrap-around included."""

from __future__ import annotations

import pytest
import torch

from node.mpc.errors import MaterialError, RingError
from node.mpc.prg import random_ring
from node.mpc.ring import (
    BilinearOp,
    ConvParams,
    apply_bilinear,
    arithmetic_shift,
    check_ring,
    logical_shift,
    low_bits,
    mul_int,
    ring_conv2d,
    ring_matmul,
    top_bit,
    wrap_int,
)

MOD = 1 << 64


def _py_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    rows, inner = a.shape
    cols = b.shape[1]
    al, bl = a.tolist(), b.tolist()
    out = [
        [wrap_int(sum(al[i][k] * bl[k][j] for k in range(inner))) for j in range(cols)]
        for i in range(rows)
    ]
    return torch.tensor(out, dtype=torch.int64)


def _mul_sum_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Independent path: elementwise products and int64 sums."""
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)


def _unfold_conv(x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    """Reference conv2d via Tensor.unfold and elementwise products (groups supported)."""
    x = torch.nn.functional.pad(x, (p.padding[1], p.padding[1], p.padding[0], p.padding[0]))
    out_channels, per_group, kh, kw = w.shape
    (sh, sw), (dh, dw) = p.stride, p.dilation
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    patches = x.unfold(2, span_h, sh).unfold(3, span_w, sw)[..., ::dh, ::dw]
    outs = []
    group_out = out_channels // p.groups
    for g in range(p.groups):
        xg = patches[:, g * per_group : (g + 1) * per_group]
        wg = w[g * group_out : (g + 1) * group_out]
        prod = xg.unsqueeze(1) * wg[None, :, :, None, None, :, :]
        outs.append(prod.sum(dim=(2, 5, 6)))
    return torch.cat(outs, dim=1)


def test_wrap_int_maps_to_signed_representative() -> None:
    """Python integers wrap to [-2^63, 2^63)."""
    assert wrap_int(2**63) == -(2**63)
    assert wrap_int(-(2**63) - 1) == 2**63 - 1
    assert wrap_int(5 * MOD + 7) == 7


def test_elementwise_ops_wrap_like_python_integers() -> None:
    """int64 +, -, * agree with Python integer arithmetic mod 2^64."""
    a, b = random_ring((2000,)), random_ring((2000,))
    for got, fn in ((a + b, int.__add__), (a - b, int.__sub__), (a * b, int.__mul__)):
        assert got.tolist() == [wrap_int(fn(x, y)) for x, y in zip(a.tolist(), b.tolist())]


def test_mul_int_accepts_any_python_integer() -> None:
    """Scalars beyond int64 are reduced mod 2^64 before multiplying."""
    a = random_ring((100,))
    got = mul_int(a, 3 * MOD + 2**63 + 5)
    assert got.tolist() == [wrap_int(x * (2**63 + 5)) for x in a.tolist()]


@pytest.mark.parametrize("shape", [(3, 5, 4), (7, 1, 9), (1, 33, 2)])
def test_matmul_matches_python_integers(shape: tuple[int, int, int]) -> None:
    """Ring matmul of full-range values equals the Python-int sum mod 2^64."""
    m, k, n = shape
    a, b = random_ring((m, k)), random_ring((k, n))
    assert torch.equal(ring_matmul(a, b), _py_matmul(a, b))


def test_matmul_exact_on_large_inner_dimension() -> None:
    """A 64x512x48 product agrees with an elementwise-product reference."""
    a, b = random_ring((64, 512)), random_ring((512, 48))
    assert torch.equal(ring_matmul(a, b), _mul_sum_matmul(a, b))


def test_matmul_batched_and_vector_forms() -> None:
    """Batched, matrix-vector, vector-matrix and dot forms are exact too."""
    a, b = random_ring((3, 4, 6)), random_ring((3, 6, 5))
    assert torch.equal(ring_matmul(a, b), _mul_sum_matmul(a, b))
    v, m = random_ring((6,)), random_ring((6, 5))
    assert torch.equal(ring_matmul(v, m), _mul_sum_matmul(v.unsqueeze(0), m)[0])
    assert torch.equal(ring_matmul(m.t(), v), _mul_sum_matmul(m.t(), v.unsqueeze(1))[:, 0])
    assert ring_matmul(v, v).item() == wrap_int(sum(x * x for x in v.tolist()))


def test_matmul_of_extremes_wraps() -> None:
    """-2^63 * -2^63 and 2^62 * 4 wrap to 0 as in the ring."""
    a = torch.tensor([[-(2**63), 2**62]], dtype=torch.int64)
    b = torch.tensor([[-(2**63)], [4]], dtype=torch.int64)
    assert ring_matmul(a, b).item() == 0


@pytest.mark.parametrize(
    "params",
    [
        ConvParams(),
        ConvParams(stride=(2, 1), padding=(1, 2)),
        ConvParams(dilation=(2, 2), padding=(1, 1)),
        ConvParams(groups=2, stride=(2, 2)),
    ],
)
def test_conv2d_matches_reference(params: ConvParams) -> None:
    """Ring conv2d of full-range values equals an unfold-and-sum reference."""
    x = random_ring((2, 4, 9, 8))
    w = random_ring((6, 4 // params.groups, 3, 3))
    assert torch.equal(ring_conv2d(x, w, params), _unfold_conv(x, w, params))


def test_conv2d_matches_python_integers() -> None:
    """A tiny conv equals the Python-int sum mod 2^64."""
    x, w = random_ring((1, 2, 3, 3)), random_ring((1, 2, 2, 2))
    xl, wl = x.tolist()[0], w.tolist()[0]
    taps = [(c, u, v) for c in range(2) for u in range(2) for v in range(2)]
    want = [
        [wrap_int(sum(xl[c][i + u][j + v] * wl[c][u][v] for c, u, v in taps)) for j in range(2)]
        for i in range(2)
    ]
    assert ring_conv2d(x, w, ConvParams())[0, 0].tolist() == want


def test_apply_bilinear_dispatches_each_op() -> None:
    """The op table maps every BilinearOp to its kernel."""
    a, b = random_ring((3, 3)), random_ring((3, 3))
    assert torch.equal(apply_bilinear(BilinearOp.MUL, a, b), a * b)
    assert torch.equal(apply_bilinear(BilinearOp.MATMUL, a, b), a @ b)
    x, w = random_ring((1, 1, 4, 4)), random_ring((2, 1, 3, 3))
    assert torch.equal(apply_bilinear(BilinearOp.CONV2D, x, w), ring_conv2d(x, w, ConvParams()))


def test_shifts_and_bits() -> None:
    """Arithmetic shift floors the signed value, logical shift the unsigned one."""
    t = torch.tensor([-5, 5, -(2**63), 2**63 - 1], dtype=torch.int64)
    assert arithmetic_shift(t, 1).tolist() == [-3, 2, -(2**62), 2**62 - 1]
    assert logical_shift(t, 1).tolist() == [(x % MOD) >> 1 for x in t.tolist()]
    assert logical_shift(t, 0).tolist() == t.tolist()
    assert top_bit(t).tolist() == [1, 0, 1, 0]
    assert low_bits(t).tolist() == [x % 2**63 for x in t.tolist()]


def test_check_ring_rejects_other_dtypes() -> None:
    """A float tensor given as a ring tensor raises RingError naming it."""
    with pytest.raises(RingError, match="share must be a torch.int64"):
        check_ring(torch.zeros(2), "share")


def test_conv_params_are_validated() -> None:
    """Nonsense conv parameters raise MaterialError."""
    with pytest.raises(MaterialError):
        ConvParams(stride=(0, 1))
    with pytest.raises(MaterialError):
        ConvParams(groups=0)
