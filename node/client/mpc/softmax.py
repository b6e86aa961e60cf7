"""Softmax, log-softmax and cross-entropy on shared (or plain) tensors.

Runs in the user's process.  Built on :mod:`.comparisons` (the max along a
dim) and :mod:`.approximations` (exp, reciprocal, log); like them, every
function also runs on a ``torch.Tensor`` with the same approximations.

Softmax is max-subtracted: z = x - max(x, dim) <= 0, so e^z never
overflows the fixed-point ring and the sum s of e^z lies in [1, k] for k
classes, inside the ranges of reciprocal and log (scaled by a public
constant for large k).  Each z below -16 counts as -16 (an error of at most
1.1e-7 per term).  Online rounds with 2 parties, k classes:
softmax 2*ceil(log2 k) + 10 + 2t (t = 5 Newton-Raphson steps for k = 10, 8
for k = 100: see ``approximations.reciprocal_in``), log_softmax
2*ceil(log2 k) + 51,
cross_entropy as log_softmax (+1 with a shared target).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import approximations, comparisons
from .group import SharingError
from .values import Value, check_operands, is_plain, require_float, retype, times_constant

__all__ = ["cross_entropy", "log_softmax", "softmax"]

_MAX_CLASSES = 80_000
"""Along a longer dim the scaled sum s/c would fall below reciprocal's range (c = k/400, 1/c >= 0.005)."""


def softmax(x: Value, dim: int | None = None, dtype: Any = None) -> Value:
    """e^z / sum(e^z) along ``dim`` with z = x - max(x, dim): absolute error below k * 1.2e-7 for k elements.

    (Each e^z under e^-16 counts as e^-16; measured on random logits: 3e-10
    for k = 10 with logits of scale 3, 7e-7 for k = 64 with scale 4.)

    Max tree 2*ceil(log2 k) rounds, exp 9, the sum's reciprocal on [1, k]
    (``reciprocal_in``: 10 rounds for k = 10, 16 for k = 100), product 1.
    """
    if dim is None:
        raise TypeError("softmax of a shared tensor needs dim")
    if dtype is not None:
        raise TypeError("softmax of a shared tensor takes no dtype")
    require_float(x, "softmax")
    e, total, k = _exponentials(x, dim)
    return e * approximations.reciprocal_in(total, 1.0, float(k))


def log_softmax(x: Value, dim: int | None = None, dtype: Any = None) -> Value:
    """z - log(sum(e^z)) along ``dim``: absolute error below k * 1.2e-7 + 4e-8; 2*ceil(log2 k) + 51 rounds."""
    if dim is None:
        raise TypeError("log_softmax of a shared tensor needs dim")
    if dtype is not None:
        raise TypeError("log_softmax of a shared tensor takes no dtype")
    require_float(x, "log_softmax")
    z = x - comparisons.amax(x, dim, keepdim=True)
    total = approximations.exp_nonpositive(z).sum(dim, keepdim=True)
    k = int(x.shape[dim])
    scale = max(1, math.ceil(k / 1000))
    return z - (approximations.log(total * (1.0 / scale)) + math.log(scale))


def _exponentials(x: Value, dim: int) -> tuple[Value, Value, int]:
    k = int(x.shape[dim])
    if k > _MAX_CLASSES:
        raise SharingError(f"softmax along a dim of {k} elements (at most {_MAX_CLASSES})", {"op": "softmax"})
    e = approximations.exp_nonpositive(x - comparisons.amax(x, dim, keepdim=True))
    return e, e.sum(dim, keepdim=True), k


def cross_entropy(
    input: Value,  # noqa: A002 - torch's name
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Value:
    """``F.cross_entropy(input, target)`` with the classes along dim 1 (dim 0 for one sample).

    ``target``: public class indices (int64, ``input``'s shape without the
    class dim), shared class indices (an integer shared tensor: one-hot by
    one comparison round), or public or shared probabilities / one-hot of
    ``input``'s shape.  ``reduction`` "mean" (over every sample), "sum" or
    "none".  Class weights, label smoothing, the deprecated
    ``size_average``/``reduce`` and an ``ignore_index`` that occurs in a
    public target are refused.
    """
    if weight is not None or label_smoothing or size_average is not None or reduce is not None:
        raise SharingError("cross_entropy of a shared tensor: weight, label_smoothing, size_average "
                           "and reduce are not supported", {"op": "cross_entropy"})
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    check_operands("cross_entropy", input, target)
    class_dim = 1 if input.dim() >= 2 else 0
    hot = _target_one_hot(target, input, class_dim, ignore_index)
    losses = -((log_softmax(input, class_dim) * hot).sum(class_dim))
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":  # not losses.mean(): 1/N encoded in 16 bits is up to 0.1% off for N ~ 200
        return times_constant(losses.sum(), 1.0 / max(losses.numel(), 1))
    return losses


def _target_one_hot(target: Any, input: Value, class_dim: int, ignore_index: int) -> Any:
    """The target as a one-hot (or probabilities) shaped like ``input``."""
    shape = tuple(input.shape)
    classes = shape[class_dim]
    if tuple(target.shape) == shape:
        return target
    expected = shape[:class_dim] + shape[class_dim + 1:]
    if tuple(target.shape) != expected:
        raise SharingError(f"cross_entropy: target of shape {list(target.shape)} for input of shape "
                           f"{list(shape)}", {"op": "cross_entropy"})
    if is_plain(target):
        target = torch.as_tensor(target)
        if target.is_floating_point():
            raise SharingError("cross_entropy: class indices must be integers", {"op": "cross_entropy"})
        if bool(torch.any(target == ignore_index)):
            raise SharingError("cross_entropy of a shared tensor: ignore_index is not supported",
                               {"op": "cross_entropy"})
        if bool(torch.any((target < 0) | (target >= classes))):
            raise SharingError(f"cross_entropy: class indices must lie in [0, {classes})", {"op": "cross_entropy"})
        hot = torch.nn.functional.one_hot(target.to(torch.int64), classes)
    else:
        if target.precision != 0:
            raise SharingError("cross_entropy: shared class indices must be an integer shared tensor",
                               {"op": "cross_entropy"})
        hot = retype(comparisons.one_hot(target.reshape(expected + (1,)), classes), torch.int64)
    if class_dim == len(shape) - 1:
        return hot
    return hot.movedim(-1, class_dim) if is_plain(hot) else _move_last(hot, class_dim)


def _move_last(hot: Value, class_dim: int) -> Value:
    """Move the last dim of a shared tensor to ``class_dim`` by adjacent transposes (public, local)."""
    for d in range(hot.dim() - 1, class_dim, -1):
        hot = hot.transpose(d, d - 1)
    return hot
