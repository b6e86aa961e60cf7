"""The approximations on plain tensors against torch, over their documented ranges (float64 grids of 10^5 points).

The bounds asserted are the ones the docstrings and the README state (with
a little headroom); fixed point adds its own error on shares
(test_functions_on_shares.py).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from node.client.mpc import approximations as A
from node.client.mpc import softmax as S
from node.client.mpc.values import RangeWarning


def grid(low: float, high: float, log: bool = False, n: int = 100_001) -> torch.Tensor:
    if log:
        return torch.logspace(math.log10(low), math.log10(high), n, dtype=torch.float64).clamp(low, high)
    return torch.linspace(low, high, n, dtype=torch.float64)


def test_exp_relative_error_on_its_range() -> None:
    """exp on [-16, 8]: relative error under 1.2e-4."""
    x = grid(*A.EXP_RANGE)
    assert ((A.exp(x) - x.exp()) / x.exp()).abs().max() < 1.2e-4


def test_reciprocal_relative_error_for_both_signs() -> None:
    """reciprocal on |x| in [0.005, 500]: relative error under 1e-10, sign kept."""
    x = grid(*A.RECIPROCAL_RANGE, log=True)
    assert (A.reciprocal(x) * x - 1).abs().max() < 1e-10
    assert (A.reciprocal(-x) * x + 1).abs().max() < 1e-10
    assert (A.div(torch.full_like(x, 3.0), x) - 3.0 / x).abs().max() < 1e-8


@pytest.mark.parametrize(("low", "high"), [(1.0, 2.0), (1.0, 10.0), (1.0, 100.0), (1.0, 1e4), (0.5, 3.0)])
def test_reciprocal_in_a_known_range(low: float, high: float) -> None:
    """reciprocal_in on [low, high]: relative error under 1e-7 (linear guess) or reciprocal's (scaled fallback)."""
    x = grid(low, high, log=True)
    assert (A.reciprocal_in(x, low, high) * x - 1).abs().max() < 1e-7


def test_rsqrt_and_sqrt() -> None:
    """rsqrt on [0.01, 150]: relative error under 3e-9; sqrt the same there, 0.025 absolute below 0.01, exact at 0."""
    x = grid(*A.SQRT_RANGE, log=True)
    assert (A.rsqrt(x) * x.sqrt() - 1).abs().max() < 3e-9
    assert (A.sqrt(x) / x.sqrt() - 1).abs().max() < 3e-9
    small = grid(0.0, 0.01)
    assert (A.sqrt(small) - small.sqrt()).abs().max() < 0.0251
    assert A.sqrt(torch.zeros(1, dtype=torch.float64)).item() == 0.0


def test_log_absolute_error() -> None:
    """log on [1e-3, 1e3]: absolute error under 5e-8."""
    x = grid(*A.LOG_RANGE, log=True)
    assert (A.log(x) - x.log()).abs().max() < 5e-8


def test_sigmoid_and_tanh_on_all_reals() -> None:
    """sigmoid and tanh on [-100, 100] (any real works): absolute errors under 1.2e-7 and 2.4e-7."""
    x = grid(-100.0, 100.0, n=200_001)
    assert (A.sigmoid(x) - torch.sigmoid(x)).abs().max() < 1.2e-7
    assert (A.tanh(x) - torch.tanh(x)).abs().max() < 2.4e-7


def test_softmax_log_softmax_and_cross_entropy() -> None:
    """Softmax within k * 1.2e-7 for k classes (terms below e^-16 count as e^-16), log_softmax and cross_entropy."""
    torch.manual_seed(0)
    logits = torch.randn(64, 10, dtype=torch.float64) * 4
    target = torch.randint(0, 10, (64,))
    assert (S.softmax(logits, 1) - logits.softmax(1)).abs().max() < 10 * 1.2e-7  # k * 1.2e-7
    assert (S.softmax(logits, 0) - logits.softmax(0)).abs().max() < 64 * 1.2e-7
    assert (S.log_softmax(logits, 1) - logits.log_softmax(1)).abs().max() < 10 * 1.2e-7 + 4e-8
    assert abs(S.cross_entropy(logits, target) - F.cross_entropy(logits, target)) < 10 * 1.2e-7 + 4e-8
    probabilities = torch.rand(64, 10, dtype=torch.float64).softmax(1)
    assert abs(S.cross_entropy(logits, probabilities) - F.cross_entropy(logits, probabilities)) < 10 * 1.2e-7 + 4e-8
    assert (S.cross_entropy(logits, target, reduction="none") - F.cross_entropy(logits, target, reduction="none")).abs().max() < 10 * 1.2e-7 + 4e-8
    pixels = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 3, 3))
    assert abs(S.cross_entropy(pixels, labels, reduction="sum") - F.cross_entropy(pixels, labels, reduction="sum")) < 1e-6


def test_a_plain_input_outside_the_range_warns_once_and_is_clamped() -> None:
    """One RangeWarning per call naming the count, pointing at the caller; the result is the clamped one."""
    x = torch.tensor([-30.0, 0.0, 20.0, 30.0], dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = A.exp(x)
    assert [w.category for w in caught] == [RangeWarning]
    assert "exp: 3 of 4 values lie outside [-16, 8]" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert torch.allclose(out, A.exp(x.clamp(-16, 8)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        A.sigmoid(x), A.softmax(x, 0) if hasattr(A, "softmax") else S.softmax(x, 0)
    assert caught == []


@pytest.mark.parametrize("fn", [A.exp, A.log, A.reciprocal, A.sqrt, A.rsqrt, A.sigmoid, A.tanh])
def test_an_integer_tensor_is_refused(fn: object) -> None:
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.tensor([1, 2]))  # type: ignore[operator]
