"""The autograd tape on plain tensors gives torch.autograd's gradients, op by op (no network).

Every op runs the same code on shared tensors; here its values and
gradients are compared with torch's in float64, to 1e-6.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from node.client.mpc import autograd_layers as L
from node.client.mpc.autograd import AutogradError, Variable

Shapes = tuple[tuple[int, ...], ...]


def _check(f_var: Callable[..., Variable], f_torch: Callable[..., torch.Tensor], shapes: Shapes, seed: int = 0) -> None:
    torch.manual_seed(seed)
    leaves = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    variables = [Variable(t.detach().clone(), requires_grad=True) for t in leaves]
    expected, got = f_torch(*leaves), f_var(*variables)
    assert got.shape == expected.shape
    assert torch.allclose(got.get(), expected.detach(), atol=1e-9)
    upstream = torch.randn_like(expected)
    expected.backward(upstream)
    got.backward(upstream.clone())
    for t, v in zip(leaves, variables):
        assert t.grad is not None and isinstance(v.grad, torch.Tensor)
        assert (t.grad - v.grad).abs().max().item() < 1e-6


ARITHMETIC = {
    "add-broadcast": (lambda a, b: a + b, ((4, 3), (3,))),
    "sub-broadcast": (lambda a, b: a - b, ((4, 1), (1, 3))),
    "rsub-neg": (lambda a, b: 2.0 - (-a) + b * 0.5, ((4, 3), (4, 3))),
    "mul": (lambda a, b: a * b * a, ((4, 3), (4, 3))),
    "mul-broadcast": (lambda a, b: a * b, ((2, 4, 3), (4, 1))),
    "div-public": (lambda a: a / 4, ((4, 3),)),
    "matmul": (lambda a, b: a @ b, ((4, 3), (3, 5))),
    "matmul-batched": (lambda a, b: a @ b, ((2, 4, 3), (3, 5))),
    "sum-dim": (lambda a: a.sum(1), ((4, 3, 2),)),
    "sum-keepdim": (lambda a: a.sum((0, 2), keepdim=True), ((4, 3, 2),)),
    "mean": (lambda a: a.mean(), ((4, 3),)),
    "mean-dim": (lambda a: a.mean(0), ((4, 3),)),
    "reshape-view": (lambda a: a.reshape(3, 4).view(2, 6), ((4, 3),)),
    "flatten": (lambda a: a.flatten(1), ((2, 3, 2, 2),)),
    "transpose-t": (lambda a, b: a.transpose(0, 1) @ b.t(), ((4, 3), (5, 4))),
    "reused": (lambda a: (a * a + a) @ a.t(), ((3, 3),)),
}


@pytest.mark.parametrize("name", sorted(ARITHMETIC))
def test_arithmetic_gradients_match_torch(name: str) -> None:
    fn, shapes = ARITHMETIC[name]
    _check(fn, fn, shapes)


CONVS = [(1, 0, 1), (1, 1, 1), (2, 1, 1), (2, 0, 1), (3, 1, 2), (1, 2, 2), (2, 2, 1)]


@pytest.mark.parametrize(("stride", "padding", "dilation"), CONVS)
def test_conv2d_gradients_match_torch(stride: int, padding: int, dilation: int) -> None:
    _check(
        lambda x, w, b: L.conv2d(x, w, b, stride, padding, dilation),
        lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation),
        ((2, 3, 8, 9), (4, 3, 3, 2), (4,)),
    )


def test_conv2d_with_a_public_input_unfolds_it() -> None:
    """A plaintext image against a trainable weight: only the weight gets a gradient."""
    torch.manual_seed(1)
    image = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    v = Variable(w.detach().clone(), requires_grad=True)
    out = L.conv2d(Variable(image), v, stride=2, padding=1)
    ref = F.conv2d(image, w, stride=2, padding=1)
    assert torch.allclose(out.get(), ref.detach())
    ref.sum().backward()
    out.sum().backward()
    assert isinstance(v.grad, torch.Tensor) and torch.allclose(v.grad, w.grad)  # type: ignore[arg-type]


POOLS = {
    "max-2": (lambda x: L.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2)),
    "max-3-stride-1": (lambda x: L.max_pool2d(x, 3, 1), lambda x: F.max_pool2d(x, 3, 1)),
    "max-dilated": (lambda x: L.max_pool2d(x, 2, 2, 0, 2), lambda x: F.max_pool2d(x, 2, 2, 0, 2)),
    "avg-2": (lambda x: L.avg_pool2d(x, 2), lambda x: F.avg_pool2d(x, 2)),
    "avg-rect": (lambda x: L.avg_pool2d(x, (3, 2), (1, 2)), lambda x: F.avg_pool2d(x, (3, 2), (1, 2))),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pooling_gradients_match_torch(name: str) -> None:
    ours, theirs = POOLS[name]
    _check(ours, theirs, ((2, 3, 7, 6),))


TARGETS = torch.tensor([1, 0, 3, 2, 2])
MSE_TARGET = torch.randn(5, 4, dtype=torch.float64)
NONLINEAR = {
    "linear": (L.linear, F.linear, ((5, 4), (3, 4), (3,))),
    "affine": (lambda x, a, c: L.affine(x, a, c), lambda x, a, c: x * a.reshape(1, -1, 1) + c.reshape(1, -1, 1),
               ((2, 3, 4), (3,), (3,))),
    "relu": (L.relu, F.relu, ((5, 4),)),
    "sigmoid": (L.sigmoid, torch.sigmoid, ((5, 4),)),
    "softmax": (lambda x: L.softmax(x, 1), lambda x: F.softmax(x, 1), ((5, 4),)),
    "log_softmax": (lambda x: L.log_softmax(x, 0), lambda x: F.log_softmax(x, 0), ((5, 4),)),
    "cross_entropy": (lambda x: L.cross_entropy(x, TARGETS), lambda x: F.cross_entropy(x, TARGETS), ((5, 4),)),
    "cross_entropy-onehot": (
        lambda x: L.cross_entropy(x, F.one_hot(TARGETS, 4).double()), lambda x: F.cross_entropy(x, TARGETS), ((5, 4),)
    ),
    "mse": (lambda x: L.mse_loss(x, MSE_TARGET), lambda x: F.mse_loss(x, MSE_TARGET), ((5, 4),)),
}


@pytest.mark.parametrize("name", sorted(NONLINEAR))
def test_layer_gradients_match_torch(name: str) -> None:
    ours, theirs, shapes = NONLINEAR[name]
    _check(ours, theirs, shapes)


def test_gradients_accumulate_and_constants_get_none() -> None:
    w = Variable(torch.tensor([2.0, 3.0], dtype=torch.float64), requires_grad=True)
    x = Variable(torch.tensor([5.0, 7.0], dtype=torch.float64))
    (w * x).sum().backward()
    (w * x).sum().backward()
    assert torch.equal(w.grad, torch.tensor([10.0, 14.0], dtype=torch.float64))  # type: ignore[arg-type]
    assert x.grad is None


def test_loss_values_are_lazy_and_backward_needs_none() -> None:
    """cross_entropy's value (a logarithm on shares) is computed only when read."""
    logits = Variable(torch.randn(3, 4, dtype=torch.float64), requires_grad=True)
    loss = L.cross_entropy(logits, torch.tensor([0, 1, 2]))
    assert loss._value is None
    loss.backward()
    assert loss._value is None and logits.grad is not None
    expected = F.cross_entropy(logits.value, torch.tensor([0, 1, 2]))  # type: ignore[arg-type]
    assert torch.allclose(loss.get(), expected)


def test_misuse_is_a_typed_error() -> None:
    x = Variable(torch.randn(2, 3, dtype=torch.float64), requires_grad=True)
    with pytest.raises(AutogradError, match="needs a gradient argument"):
        (x * 2).backward()
    with pytest.raises(AutogradError, match="does not require a gradient"):
        Variable(torch.ones(1)).backward()
    with pytest.raises(AutogradError, match="padding=0 only"):
        L.max_pool2d(Variable(torch.randn(1, 1, 4, 4), requires_grad=True), 2, padding=1)
    with pytest.raises(AutogradError, match="groups=1"):
        L.conv2d(x.reshape(1, 2, 3, 1), Variable(torch.randn(2, 1, 1, 1), requires_grad=True), groups=2)
    with pytest.raises(AutogradError, match="3 targets for a batch of 2"):
        L.cross_entropy(x, torch.tensor([0, 1, 2]))
    with pytest.raises(AutogradError, match="class indices"):
        L.cross_entropy(x, torch.ones(2, 4))
    with pytest.raises(AutogradError, match="shape"):
        x.value = torch.zeros(3, 2)


def test_tape_is_freed_after_backward() -> None:
    x = Variable(torch.randn(2, 2, dtype=torch.float64), requires_grad=True)
    y = (x * x).sum()
    assert not y.is_leaf
    y.backward()
    assert y.is_leaf and x.grad is not None
