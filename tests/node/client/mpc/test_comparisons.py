"""Comparisons on plain tensors (torch's results exactly) and their online rounds (counted on a Depth stand-in)."""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F

from node.client.mpc import approximations as A
from node.client.mpc import comparisons as C
from node.client.mpc import softmax as S
from node.client.mpc.group import SharingError
from tests.node.client.mpc.depth import Depth

torch.manual_seed(0)
X = torch.randn(4, 7, 5, dtype=torch.float64)
TIES = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]])


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_max_min_and_argmax_along_each_dim_match_torch(dim: int) -> None:
    """Values and indices as torch (keepdim too); argmax/argmin one-hot of the input's shape."""
    for ours, theirs in ((C.max_(X, dim), torch.max(X, dim)), (C.min_(X, dim, keepdim=True), torch.min(X, dim, keepdim=True))):
        assert torch.equal(ours.values, theirs.values) and torch.equal(ours.indices, theirs.indices)
    assert torch.equal(C.argmax(X, dim), F.one_hot(X.argmax(dim), X.shape[dim]).movedim(-1, dim % 3))
    assert torch.equal(C.argmin(X, dim), F.one_hot(X.argmin(dim), X.shape[dim]).movedim(-1, dim % 3))
    assert torch.equal(C.amax(X, dim), X.amax(dim))


def test_whole_tensor_max_and_argmax_and_ties_to_the_lowest_index() -> None:
    assert torch.equal(C.max_(X), X.max()) and torch.equal(C.min_(X), X.min())
    assert torch.equal(C.argmax(X), F.one_hot(X.argmax(), X.numel()).reshape(X.shape))
    assert torch.equal(C.max_(TIES, 1).indices, torch.tensor([1, 0]))
    assert torch.equal(C.argmax(TIES, 1), torch.tensor([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [(2, None, 0, 1), (3, 2, 1, 1), (3, 1, 1, 1), ((2, 3), (1, 2), (1, 1), 1), (4, 3, 2, 1), (2, 1, 0, 2)],
)
def test_max_pool2d_matches_torch(kernel: Any, stride: Any, padding: Any, dilation: Any) -> None:
    """Edge replication stands in for -inf padding exactly; 3-d inputs too."""
    image = torch.randn(2, 3, 9, 11, dtype=torch.float64) - 5.0  # all negative: zero padding would show
    expected = F.max_pool2d(image, kernel, stride, padding, dilation)
    assert torch.equal(C.max_pool2d(image, kernel, stride, padding, dilation), expected)
    assert torch.equal(C.max_pool2d(image[0], kernel, stride, padding, dilation), expected[0])


def test_max_pool2d_refusals() -> None:
    image = torch.randn(1, 1, 6, 6)
    for kwargs, message in (({"padding": 2}, "at most half"), ({"ceil_mode": True}, "ceil_mode"),
                            ({"padding": 1, "dilation": 2}, "dilation with padding")):
        with pytest.raises(SharingError, match=message):
            C.max_pool2d(image, 3, **kwargs)


def test_elementwise_comparisons_match_torch() -> None:
    Y = torch.randn_like(X)
    assert torch.equal(C.gt(X, Y), X > Y) and torch.equal(C.ge(X, Y), X >= Y)
    assert torch.equal(C.lt(X, 0.1), X < 0.1) and torch.equal(C.le(X, Y), X <= Y)
    assert torch.equal(C.sign(torch.tensor([-2.0, 0.0, 3.0])), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(C.abs_(X), X.abs()) and torch.equal(C.clamp(X, -0.5, 0.5), X.clamp(-0.5, 0.5))
    assert torch.equal(C.clamp(X, max=0.3), X.clamp(max=0.3)) and torch.equal(C.maximum(X, Y), torch.maximum(X, Y))
    assert torch.equal(C.where(X > Y, X, Y), torch.where(X > Y, X, Y))
    assert torch.equal(C.max_(X, Y), torch.max(X, Y)) and torch.equal(C.min_(X, Y), torch.min(X, Y))


def test_a_comparison_is_exact_on_the_depth_stand_in() -> None:
    """The shared code path (drelu, bit products) gives torch's bits, values and indices."""
    x, y = Depth.of(X), Depth.of(torch.randn_like(X))
    assert torch.equal(C.gt(x, y).data.bool(), X > y.data) and torch.equal(C.le(x, 0.2).data.bool(), X <= 0.2)
    assert torch.equal(C.sign(x).data, X.sign()) and torch.equal(C.abs_(x).data, X.abs())
    ours = C.max_(Depth.of(TIES), 1)
    assert torch.equal(ours.values.data, TIES.max(1).values.double()) and torch.equal(ours.indices.data, torch.tensor([1.0, 0.0]))
    assert torch.equal(C.argmax(Depth.of(TIES), 1).data, C.argmax(TIES, 1).double())
    image = torch.randn(1, 2, 7, 7, dtype=torch.float64)
    assert torch.allclose(C.max_pool2d(Depth.of(image), 3, 2, 1).data, F.max_pool2d(image, 3, 2, 1), atol=1e-12)
    probabilities = A.sigmoid(Depth.of(X)).data
    assert (probabilities - torch.sigmoid(X)).abs().max() < 1.2e-7


K = 10


@pytest.mark.parametrize(
    ("name", "fn", "rounds"),
    [
        ("gt", lambda x, p: C.gt(x, p), 1), ("sign", lambda x, p: C.sign(x), 1), ("abs", lambda x, p: C.abs_(x), 2),
        ("clamp", lambda x, p: C.clamp(x, -1.0, 1.0), 2), ("maximum", lambda x, p: C.maximum(x, p), 2),
        ("where", lambda x, p: C.where(C.ge(p, 0.0), x, p), 1 + 1),
        ("max_dim", lambda x, p: C.max_(x, 1).indices, 2 * math.ceil(math.log2(K))),
        ("max_all", lambda x, p: C.max_(x), 2 * math.ceil(math.log2(4 * K))),
        ("argmax", lambda x, p: C.argmax(x, 1), 2 * math.ceil(math.log2(K)) + 1),
        ("max_pool2d", lambda x, p: C.max_pool2d(x.reshape(1, 1, 4, K), 2), 2 * 2),
        ("exp", lambda x, p: A.exp(x), 9), ("reciprocal", lambda x, p: A.reciprocal(p), 32),
        ("reciprocal_positive", lambda x, p: A.reciprocal(p, positive=True), 29), ("div", lambda x, p: A.div(x, p), 33),
        ("rsqrt", lambda x, p: A.rsqrt(p), 25), ("sqrt", lambda x, p: A.sqrt(p), 26), ("log", lambda x, p: A.log(p), 42),
        ("sigmoid", lambda x, p: A.sigmoid(x), 18), ("tanh", lambda x, p: A.tanh(x), 18),
        ("softmax", lambda x, p: S.softmax(x, 1), 2 * math.ceil(math.log2(K)) + 9 + 2 * 5 + 1),
        ("reciprocal_in_1_2", lambda x, p: A.reciprocal_in(p, 1.0, 2.0), 6),
        ("reciprocal_in_1_1e4", lambda x, p: A.reciprocal_in(p, 1.0, 1e4), 29),
        ("log_softmax", lambda x, p: S.log_softmax(x, 1), 2 * math.ceil(math.log2(K)) + 51),
        ("cross_entropy", lambda x, p: S.cross_entropy(x, torch.tensor([1, 2, 3, 4])), 2 * math.ceil(math.log2(K)) + 51),
    ],
)
def test_online_rounds_are_the_documented_ones(name: str, fn: Callable[[Depth, Depth], Depth], rounds: int) -> None:
    """Rounds with 2 parties (drelu 1, relu 2, a product 1) as the module docstrings and README state."""
    x, p = Depth.of(torch.randn(4, K)), Depth.of(torch.rand(4, K) + 0.1)
    assert fn(x, p).depth == rounds, name
