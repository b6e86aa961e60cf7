"""Comparisons on shared (or plain) tensors: ``> < >= <=``, sign, abs, clamp, max/min, argmax, max-pool, where.

Runs in the user's process.  Everything is built from one secure
primitive, the bits ``d = [x >= 0]`` (``SharedTensor.drelu``: one online
round with 2 parties and function secret sharing), plus products of a
shared value by those bits (one Beaver round, no truncation).  Every
function also runs on a ``torch.Tensor`` (see :mod:`.values`), where it is
torch's own result.  Nothing waits: each op is posted and the client
pipelines the rounds; independent comparisons of one function (e.g. the two
sides of ``clamp``) run in the same rounds.

Online rounds with 2 parties: a comparison 1, ``sign`` 1 (two comparisons
in parallel), ``relu``/``clamp``/``maximum`` 2, ``abs`` 2, ``where`` with a
shared condition 1 (0 with a public one); ``max``/``min`` over k elements
2*ceil(log2 k) (a pairwise tree; every level is one comparison d of the
pairs and one round of products for the values and, in parallel, the
indices: ``max(a, b) = b + (a - b) * d``, ``idx = idx_b + (idx_a - idx_b) * d``),
``argmax`` one more round, ``max_pool2d`` 2*ceil(log2(kh*kw)).

Comparisons are exact while the difference of the operands fits the
comparison width: |x - y| < 2^(width - 1 - precision) (32768 at the
default 32 bits and 16 fractional bits).  Ties go to the lowest index, as
in torch.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from .group import SharingError
from .values import Value, bit_not, check_operands, drelu, is_plain, relu, retype, select

__all__ = [
    "Extremum",
    "abs_",
    "amax",
    "argmax",
    "argmin",
    "clamp",
    "ge",
    "gt",
    "le",
    "lt",
    "max_",
    "max_pool2d",
    "maximum",
    "min_",
    "minimum",
    "one_hot",
    "sign",
    "where",
]


class Extremum(NamedTuple):
    """``(values, indices)`` of a max/min along a dim, like ``torch.return_types.max``."""

    values: Any
    indices: Any


# -- elementwise ---------------------------------------------------------------


def ge(x: Any, y: Any) -> Value:
    """Bits ``[x >= y]`` (one round)."""
    if is_plain(x) and is_plain(y):
        return torch.as_tensor(x) >= y
    check_operands("ge", x, y)
    return drelu(x - y)


def le(x: Any, y: Any) -> Value:
    """Bits ``[x <= y]`` (one round)."""
    if is_plain(x) and is_plain(y):
        return torch.as_tensor(x) <= y
    check_operands("le", x, y)
    return drelu(y - x)


def gt(x: Any, y: Any) -> Value:
    """Bits ``[x > y]`` = not ``[y >= x]`` (one round)."""
    if is_plain(x) and is_plain(y):
        return torch.as_tensor(x) > y
    check_operands("gt", x, y)
    return bit_not(drelu(y - x))


def lt(x: Any, y: Any) -> Value:
    """Bits ``[x < y]`` = not ``[x >= y]`` (one round)."""
    if is_plain(x) and is_plain(y):
        return torch.as_tensor(x) < y
    check_operands("lt", x, y)
    return bit_not(drelu(x - y))


def sign(x: Value) -> Value:
    """-1, 0 or 1 as torch (sign(0) = 0): ``[x >= 0] - [-x >= 0]``, two comparisons in one round.

    A shared result is an exact integer (precision 0) decoded as ``x.dtype``.
    """
    if is_plain(x):
        return torch.sign(x)
    return retype(drelu(x) - drelu(-x), x.dtype)


def abs_(x: Value) -> Value:
    """``|x| = x * (2[x >= 0] - 1)`` (two rounds)."""
    if is_plain(x):
        return torch.abs(x)
    return x * (drelu(x) * 2 - 1)


def clamp(x: Value, min: Any = None, max: Any = None) -> Value:  # noqa: A002 - torch's names
    """``min(max(x, min), max)`` as ``min + relu(x - min) - relu(x - max)``: two rounds, both sides at once.

    ``min`` and ``max`` may be numbers, public tensors or shared tensors
    (``min <= max`` is assumed, as the formula needs; public bounds are checked).
    """
    if min is None and max is None:
        raise TypeError("clamp needs at least one of min and max")
    if is_plain(x) and is_plain(min if min is not None else 0) and is_plain(max if max is not None else 0):
        return torch.clamp(torch.as_tensor(x), min, max)
    check_operands("clamp", *(v for v in (x, min, max) if v is not None))
    if min is not None and max is not None and is_plain(min) and is_plain(max):
        if bool(torch.any(torch.as_tensor(min) > torch.as_tensor(max))):
            raise SharingError("clamp of a shared tensor needs min <= max", {"op": "clamp"})
    if max is None:
        return relu(x - min) + min
    if min is None:
        return max - relu(max - x)
    return relu(x - min) - relu(x - max) + min


def maximum(x: Any, y: Any) -> Value:
    """Elementwise ``max(x, y) = y + relu(x - y)`` (two rounds)."""
    if is_plain(x) and is_plain(y):
        return torch.maximum(torch.as_tensor(x), torch.as_tensor(y))
    check_operands("maximum", x, y)
    return relu(x - y) + y


def minimum(x: Any, y: Any) -> Value:
    """Elementwise ``min(x, y) = x - relu(x - y)`` (two rounds)."""
    if is_plain(x) and is_plain(y):
        return torch.minimum(torch.as_tensor(x), torch.as_tensor(y))
    check_operands("minimum", x, y)
    return x - relu(x - y)


def where(condition: Any, x: Any, y: Any) -> Value:
    """``x`` where ``condition`` else ``y`` = ``y + (x - y) * condition``.

    A shared condition (bits, e.g. ``a > b``) costs one product round when
    ``x`` or ``y`` is shared, none when both are public; a public condition
    is local.
    """
    if is_plain(condition) and is_plain(x) and is_plain(y):
        return torch.where(torch.as_tensor(condition), x, y)
    check_operands("where", condition, x, y)
    if is_plain(condition):
        condition = torch.as_tensor(condition).to(torch.bool)
    return select(condition, x, y)


# -- reductions ------------------------------------------------------------------


def max_(x: Value, dim: Any = None, keepdim: bool = False) -> Any:
    """``torch.max``: the largest value, or ``(values, indices)`` along ``dim``, or elementwise with a tensor.

    Along a dim the indices are a shared int64 tensor (precision 0); ties
    go to the lowest index, as in torch.
    """
    if dim is not None and not isinstance(dim, int):
        return maximum(x, dim)
    return _extremum(x, dim, keepdim, largest=True)


def min_(x: Value, dim: Any = None, keepdim: bool = False) -> Any:
    """``torch.min``, as :func:`max_` on ``-x`` (ties to the lowest index)."""
    if dim is not None and not isinstance(dim, int):
        return minimum(x, dim)
    return _extremum(x, dim, keepdim, largest=False)


def amax(x: Value, dim: int, keepdim: bool = False) -> Value:
    """The largest values along ``dim``, without indices (the tree's value products only)."""
    shape = tuple(x.shape)
    dim = _dim(dim, len(shape))
    values, _ = _tree(_last(x, dim), largest=True, track=False)
    return _restore(values, dim, shape, keepdim)


def argmax(x: Value, dim: int | None = None, keepdim: bool = False) -> Value:
    """A one-hot of ``x``'s shape marking the maximum along ``dim`` (or of the whole tensor).

    Unlike ``torch.argmax`` (an index), a secure index is of little use:
    ``(x * argmax(x, dim)).sum(dim)`` is the max, and a one-hot is what
    max-pool backward and accuracy counts need.  It is computed from the
    tree's shared index i as ``[i >= j] - [i >= j + 1]`` for every position
    j (one more comparison round), so exactly one element is 1 even on ties
    (the lowest index).  ``keepdim`` is accepted for torch's signature; the
    one-hot always has ``x``'s shape.  A plaintext ``x`` gives the same
    one-hot (int64).
    """
    del keepdim
    return _one_hot_extremum(x, dim, largest=True)


def argmin(x: Value, dim: int | None = None, keepdim: bool = False) -> Value:
    """A one-hot of ``x``'s shape marking the minimum (see :func:`argmax`)."""
    del keepdim
    return _one_hot_extremum(x, dim, largest=False)


def _extremum(x: Value, dim: int | None, keepdim: bool, largest: bool) -> Any:
    shape = tuple(x.shape)
    if dim is None:
        values, _ = _tree(x.reshape(-1), largest, track=False)
        return values.reshape(())
    dim = _dim(dim, len(shape))
    values, indices = _tree(_last(x, dim), largest, track=True)
    return Extremum(_restore(values, dim, shape, keepdim), _restore(indices, dim, shape, keepdim))


def _one_hot_extremum(x: Value, dim: int | None, largest: bool) -> Value:
    shape = tuple(x.shape)
    if dim is None:
        _, index = _tree(x.reshape(-1), largest, track=True)
        return one_hot(index, len(x.reshape(-1))).reshape(shape)
    dim = _dim(dim, len(shape))
    moved = _last(x, dim)
    _, index = _tree(moved, largest, track=True)
    hot = one_hot(index, moved.shape[-1])
    return hot if dim == len(shape) - 1 else hot.transpose(dim, -1)


def one_hot(index: Value, k: int) -> Value:
    """``[index == j]`` for j < k along the last dim (index: shape ``(..., 1)``), from ``[index >= j]``."""
    positions = torch.arange(k + 1, dtype=torch.int64)
    if is_plain(index):
        return (index == positions[:k]).to(torch.int64)
    at_least = drelu(index - positions)
    return retype(at_least[..., :k] - at_least[..., 1:], torch.int64)


def _tree(x: Value, largest: bool, track: bool) -> tuple[Value, Value]:
    """Max (or min) over the last dim by a pairwise tree: ``(values, indices)`` with that dim kept as 1.

    Each level compares elements 0, 2, 4... with 1, 3, 5... (the last one
    with itself when the count is odd, so no concatenation is needed) and
    keeps, by one shared bit per pair, the value and its index.  Pairs are
    adjacent ranges, the left one first, and ``>=`` keeps the left: ties go
    to the lowest index.
    """
    k = int(x.shape[-1])
    if k == 0:
        raise SharingError("max/min of an empty dimension", {"op": "max"})
    values, indices = x, None
    while k > 1:
        left = torch.arange(0, k, 2)
        right = torch.clamp(left + 1, max=k - 1)
        a, b = values[..., left], values[..., right]
        keep = drelu(a - b) if largest else drelu(b - a)
        values = select(keep, a, b)
        if track:
            ia, ib = (left, right) if indices is None else (indices[..., left], indices[..., right])
            indices = retype(select(keep, ia, ib), torch.int64)
        k = len(left)
    if track and indices is None:  # a single element: index 0
        indices = torch.zeros(tuple(x.shape), dtype=torch.int64)
    return values, indices


def _dim(dim: int, rank: int) -> int:
    span = max(rank, 1)
    if not -span <= dim < span:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-span}, {span - 1}], but got {dim})")
    return dim % span


def _last(x: Value, dim: int) -> Value:
    if x.dim() == 0:
        return x.reshape(1)
    return x if dim == x.dim() - 1 else x.transpose(dim, -1)


def _restore(value: Any, dim: int, shape: Sequence[int], keepdim: bool) -> Any:
    """Undo :func:`_last` on a tree result (its last dim is 1), dropping ``dim`` unless ``keepdim``."""
    kept = list(shape)
    if kept:
        kept[dim] = 1
    if len(shape) and dim != len(shape) - 1:
        value = value.transpose(dim, -1)
    if keepdim:
        return value.reshape(tuple(kept))
    return value.reshape(tuple(s for i, s in enumerate(shape) if i != dim))


# -- pooling ---------------------------------------------------------------------


def max_pool2d(
    x: Value,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Value:
    """``F.max_pool2d`` on a ``(N, C, H, W)`` or ``(C, H, W)`` tensor: 2*ceil(log2(kh*kw)) rounds.

    Every window is gathered with one public advanced index per party (no
    data-dependent access), giving ``(..., OH, OW, kh*kw)``, and reduced by
    the max tree.  Padding replicates the edge (clamped indices) instead of
    -inf: a window always holds a real element (padding <= kernel / 2, as
    torch requires), and the nearest edge element of a padded cell lies in
    the same window, so the max is torch's.  Dilation is allowed without
    padding; ``ceil_mode`` and ``return_indices`` are refused.
    """
    if ceil_mode or return_indices:
        raise SharingError("max_pool2d of a shared tensor: ceil_mode and return_indices are not supported", {})
    if x.dim() not in (3, 4):
        raise SharingError(f"max_pool2d needs a 3-d or 4-d input, got {x.dim()} dims", {"op": "max_pool2d"})
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None and stride != [] else (kh, kw))
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise SharingError("max_pool2d: kernel, stride and dilation must be positive, padding >= 0", {})
    if ph > kh // 2 or pw > kw // 2:
        raise SharingError("max_pool2d: padding must be at most half the kernel size", {"op": "max_pool2d"})
    if (ph or pw) and (dh > 1 or dw > 1):
        raise SharingError("max_pool2d of a shared tensor: dilation with padding is not supported", {})
    height, width = int(x.shape[-2]), int(x.shape[-1])
    rows = _window_indices(height, kh, sh, ph, dh)
    cols = _window_indices(width, kw, sw, pw, dw)
    if rows.shape[0] < 1 or cols.shape[0] < 1:
        raise SharingError("max_pool2d: the kernel is larger than the padded input", {"op": "max_pool2d"})
    oh, ow = rows.shape[0], cols.shape[0]
    windows = x[..., rows[:, None, :, None], cols[None, :, None, :]]  # (..., OH, OW, kh, kw)
    flat = windows.reshape(tuple(x.shape[:-2]) + (oh, ow, kh * kw))
    values, _ = _tree(flat, largest=True, track=False)
    return values.reshape(tuple(x.shape[:-2]) + (oh, ow))


def _window_indices(size: int, kernel: int, stride: int, padding: int, dilation: int) -> torch.Tensor:
    """``(out, kernel)`` input positions of each window along one axis, padding replaced by the edge."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    starts = torch.arange(max(out, 0)) * stride - padding
    positions = starts[:, None] + torch.arange(kernel)[None, :] * dilation
    return torch.clamp(positions, 0, size - 1)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    items = tuple(int(v) for v in value)
    if len(items) == 1:
        return (items[0], items[0])
    if len(items) != 2:
        raise SharingError(f"max_pool2d parameters must be an int or two ints, got {value!r}", {})
    return (items[0], items[1])
