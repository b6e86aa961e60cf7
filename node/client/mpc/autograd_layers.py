"""Neural-network ops on :class:`~node.client.mpc.autograd.Variable`: layers, activations, losses.

Runs in the user's process.  Each op computes its value with operations a
shared tensor and a plain tensor both answer, and keeps for its backward
what the forward already paid for:

- ``relu``: the bit ``d = [x >= 0]`` (one comparison); forward ``x * d``,
  backward ``g * d`` (a bit-times-value product, no truncation);
- ``max_pool2d``: the one-hot argmax of every window; forward
  ``sum(windows * onehot)``, backward scatters ``g * onehot`` back;
- ``conv2d``: backward by convolutions too (``dW`` = conv of the input with
  the gradient, ``dX`` = conv of the zero-dilated gradient with the flipped
  weight), so shared operands stay shared and no op is needed that shares
  lack; windows (pooling) are public index lookups, and putting window
  gradients back is two products with public 0/1 matrices;
- ``sigmoid``/``softmax``/``log_softmax``/``cross_entropy``: torch's
  functions on plain tensors, the approximations of
  :mod:`node.client.mpc.approximations` and :mod:`node.client.mpc.softmax`
  on shares, with closed-form backwards (``s(1-s)``; ``softmax - onehot``).  Loss values are computed only
  when read: ``loss.backward()`` needs none of the logarithms.
"""

from __future__ import annotations

from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F

from . import approximations, comparisons
from . import softmax as softmax_functions
from .autograd import AutogradError, TensorLike, Variable, as_variable, is_unit
from .shared import SharedTensor

__all__ = [
    "affine", "avg_pool2d", "conv2d", "cross_entropy", "linear", "log_softmax", "max_pool2d", "mse_loss",
    "relu", "sigmoid", "softmax",
]

Pair = tuple[int, int]


# -- tensor-like primitives: the one place shared and plain tensors differ ------------------


def drelu(x: TensorLike) -> TensorLike:
    """``[x >= 0]``: shared bits (precision 0) for a shared ``x``, the same 0/1 values as ``x``'s dtype otherwise."""
    if isinstance(x, SharedTensor):
        return x.drelu()
    return (x >= 0).to(x.dtype)


def max_onehot(windows: TensorLike) -> tuple[TensorLike, TensorLike]:
    """The maximum over the last dim and its one-hot argmax (ties: the lowest index, as torch).

    On shares: one pairwise tree carrying values and indices
    (:func:`~node.client.mpc.comparisons.max_`), then the index as a
    one-hot (one more comparison round); no product with the windows.
    """
    if isinstance(windows, SharedTensor):
        best = comparisons.max_(windows, dim=-1, keepdim=True)
        onehot = comparisons.one_hot(best.indices, int(windows.shape[-1]))
        return best.values.reshape(tuple(windows.shape[:-1])), onehot
    values, index = windows.max(dim=-1)
    return values, F.one_hot(index, windows.shape[-1]).to(windows.dtype)


def _sigmoid(x: TensorLike) -> TensorLike:
    """torch's sigmoid, or its approximation on shares (:func:`~node.client.mpc.approximations.sigmoid`)."""
    return approximations.sigmoid(x) if isinstance(x, SharedTensor) else torch.sigmoid(x)


def _softmax(x: TensorLike, dim: int) -> TensorLike:
    return softmax_functions.softmax(x, dim) if isinstance(x, SharedTensor) else F.softmax(x, dim=dim)


def _log_softmax(x: TensorLike, dim: int) -> TensorLike:
    return softmax_functions.log_softmax(x, dim) if isinstance(x, SharedTensor) else F.log_softmax(x, dim=dim)


def _exp_nonpositive(x: TensorLike) -> TensorLike:
    """e^x for x <= 0 (a log-softmax): 9 rounds on shares, instead of a whole softmax."""
    return approximations.exp_nonpositive(x) if isinstance(x, SharedTensor) else torch.exp(x)


def _conv(x: TensorLike, w: TensorLike, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> TensorLike:
    """``conv2d(x, w)`` for any mix of shared and public operands.

    A public input against a shared weight is unfolded in plaintext (here,
    the input is public) and multiplied by the weight as a matrix: local on
    every party, no triple.
    """
    if isinstance(x, torch.Tensor) and isinstance(w, SharedTensor):
        if groups != 1:
            raise AutogradError("conv2d of a public input with a shared weight takes groups=1 only", {})
        n, out_channels = x.shape[0], w.shape[0]
        kernel = (int(w.shape[2]), int(w.shape[3]))
        cols = F.unfold(x.to(torch.float64), kernel, dilation=dilation, padding=padding, stride=stride)
        oh, ow = _out_size(x.shape[2:], kernel, stride, padding, dilation)
        return (w.reshape(out_channels, -1) @ cols).reshape(n, out_channels, oh, ow)
    return F.conv2d(_arg(x), _arg(w), None, stride, padding, dilation, groups)


def _arg(x: TensorLike) -> torch.Tensor:
    """``x`` for a torch function: a shared tensor answers it through ``__torch_function__`` (typed as a tensor here)."""
    return cast(torch.Tensor, x)


def _like(public: torch.Tensor, other: TensorLike) -> torch.Tensor:
    """A public float64 constant in ``other``'s dtype when ``other`` is a plain tensor (torch mixes no dtypes in matmul)."""
    return public.to(other.dtype) if isinstance(other, torch.Tensor) else public


def _out_size(size: Sequence[int], kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    out = [(int(size[i]) + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)]
    return out[0], out[1]


def _pair(value: int | Sequence[int]) -> Pair:
    if isinstance(value, int):
        return value, value
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise AutogradError(f"expected an int or two ints, got {value!r}", {})
    return items[0], items[1]


# -- layers ---------------------------------------------------------------------------


def linear(x: Variable, weight: Variable, bias: Variable | None = None) -> Variable:
    """``x @ weight.T + bias`` (``torch.nn.Linear``)."""
    out = x @ weight.t()
    return out if bias is None else out + bias


def affine(x: Variable, scale: Variable, shift: Variable, channel_dim: int = 1) -> Variable:
    """``x * scale + shift`` per channel (batch norm in eval, folded)."""
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    return x * scale.reshape(shape) + shift.reshape(shape)


def conv2d(
    x: Variable,
    weight: Variable,
    bias: Variable | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Variable:
    """``F.conv2d`` with gradients for the input and the weight (groups=1 when either needs one)."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    if groups != 1 and (x.requires_grad or weight.requires_grad):
        raise AutogradError("conv2d gradients are computed for groups=1 only", {"groups": groups})
    xv, wv = x.value, weight.value
    in_shape, w_shape = x.shape, weight.shape
    kernel = (int(w_shape[2]), int(w_shape[3]))

    def backward(g: TensorLike) -> tuple[TensorLike | None, TensorLike | None]:
        gx = _conv_input_grad(g, wv, in_shape, kernel, s, p, d) if x.requires_grad else None
        gw = _conv_weight_grad(g, xv, kernel, s, p, d) if weight.requires_grad else None
        return gx, gw

    out = Variable.record(_conv(xv, wv, s, p, d, groups), (x, weight), backward)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def _conv_input_grad(
    g: TensorLike, w: TensorLike, in_shape: torch.Size, kernel: Pair, s: Pair, p: Pair, d: Pair
) -> TensorLike:
    """The transposed convolution: conv of the zero-dilated gradient with the flipped, transposed weight."""
    pads = [d[i] * (kernel[i] - 1) - p[i] for i in range(2)]  # negative: crop instead of padding
    extra = tuple((int(in_shape[2 + i]) + 2 * p[i] - d[i] * (kernel[i] - 1) - 1) % s[i] for i in range(2))
    spread = _dilate(g, s, (extra[0], extra[1]))
    rows, cols = torch.arange(kernel[0] - 1, -1, -1), torch.arange(kernel[1] - 1, -1, -1)
    flipped = w[:, :, rows][:, :, :, cols].transpose(0, 1)
    out = _conv(spread, flipped, (1, 1), (max(pads[0], 0), max(pads[1], 0)), d, 1)
    if min(pads) >= 0:
        return out
    top, left = max(-pads[0], 0), max(-pads[1], 0)
    return out[:, :, top : top + int(in_shape[2]), left : left + int(in_shape[3])]


def _conv_weight_grad(g: TensorLike, x: TensorLike, kernel: Pair, s: Pair, p: Pair, d: Pair) -> TensorLike:
    """``dW[o, c, i, j] = sum g[n, o, h, w] * x_pad[n, c, h*s + i*d, w*s + j*d]``: a conv over the batch."""
    full = _conv(x.transpose(0, 1), g.transpose(0, 1), (1, 1), p, s, 1).transpose(0, 1)
    return full[:, :, : (kernel[0] - 1) * d[0] + 1 : d[0], : (kernel[1] - 1) * d[1] + 1 : d[1]]


def _dilate(g: TensorLike, s: Pair, extra: Pair) -> TensorLike:
    """Put ``s - 1`` zeros between the rows and columns of ``g`` (and ``extra`` at the end): public 0/1 products."""
    if s == (1, 1) and extra == (0, 0):
        return g
    h, w = int(g.shape[2]), int(g.shape[3])
    left = _like(_spread_matrix(h, s[0], extra[0]).t(), g)
    right = _like(_spread_matrix(w, s[1], extra[1]), g)
    return left @ (g @ right)


def _spread_matrix(n: int, step: int, extra: int) -> torch.Tensor:
    """(n, (n-1)*step + 1 + extra): row i has its 1 at column i*step."""
    out = torch.zeros(n, (n - 1) * step + 1 + extra, dtype=torch.float64)
    out[torch.arange(n), torch.arange(n) * step] = 1.0
    return out


# -- pooling ----------------------------------------------------------------------------


class _Windows:
    """The pooling windows of an (N, C, H, W) input, as public index lookups (no padding)."""

    def __init__(self, shape: torch.Size, kernel: Pair, stride: Pair, dilation: Pair) -> None:
        self.shape = shape
        h, w = int(shape[2]), int(shape[3])
        self.out = _out_size((h, w), kernel, stride, (0, 0), dilation)
        if min(self.out) < 1:
            raise AutogradError(f"pooling window {kernel} does not fit an input of {h}x{w}", {})
        oh, ow = self.out
        rows = (torch.arange(oh) * stride[0]).reshape(oh, 1) + torch.arange(kernel[0]) * dilation[0]
        cols = (torch.arange(ow) * stride[1]).reshape(ow, 1) + torch.arange(kernel[1]) * dilation[1]
        # index[l, k]: flat position of element k of window l, windows row-major, elements row-major
        flat = rows.reshape(oh, 1, kernel[0], 1) * w + cols.reshape(1, ow, 1, kernel[1])
        self.index = flat.reshape(oh * ow, kernel[0] * kernel[1])
        self.kernel = kernel
        # scattering window gradients back: left @ D @ right with D (N, C, oh*kh, ow*kw)
        self.left = torch.zeros(h, oh * kernel[0], dtype=torch.float64)
        self.left[rows.reshape(-1), torch.arange(oh * kernel[0])] = 1.0
        self.right = torch.zeros(ow * kernel[1], w, dtype=torch.float64)
        self.right[torch.arange(ow * kernel[1]), cols.reshape(-1)] = 1.0

    def gather(self, x: TensorLike) -> TensorLike:
        """(N, C, L, kh*kw): every window's elements."""
        n, c = int(self.shape[0]), int(self.shape[1])
        return x.reshape(n, c, -1)[:, :, self.index]

    def scatter(self, g: TensorLike) -> TensorLike:
        """The adjoint of :meth:`gather`: window gradients summed back into the input's positions."""
        n, c = int(self.shape[0]), int(self.shape[1])
        (oh, ow), (kh, kw) = self.out, self.kernel
        grid = g.reshape(n, c, oh, ow, kh, kw).transpose(3, 4).reshape(n, c, oh * kh, ow * kw)
        return _like(self.left, g) @ (grid @ _like(self.right, g))


def _pool_windows(
    x: Variable, kernel_size: Any, stride: Any, padding: Any, dilation: Any, what: str
) -> _Windows:
    if _pair(padding) != (0, 0):
        raise AutogradError(f"{what} on variables takes padding=0 only", {"padding": str(padding)})
    if x.dim() != 4:
        raise AutogradError(f"{what} takes an (N, C, H, W) input, not {list(x.shape)}", {})
    kernel = _pair(kernel_size)
    return _Windows(x.shape, kernel, _pair(stride if stride is not None else kernel), _pair(dilation))


def max_pool2d(
    x: Variable, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1
) -> Variable:
    """``F.max_pool2d``: the one-hot argmax of each window is kept for the backward.

    Without a gradient to compute, the max alone (no indices, any padding):
    :func:`~node.client.mpc.comparisons.max_pool2d` on shares.
    """
    if not x.requires_grad:
        value = x.value
        if isinstance(value, SharedTensor):
            return Variable(comparisons.max_pool2d(value, kernel_size, stride, padding, dilation))
        return Variable(F.max_pool2d(value, kernel_size, stride, padding, dilation))
    windows = _pool_windows(x, kernel_size, stride, padding, dilation, "max_pool2d")
    values, onehot = max_onehot(windows.gather(x.value))
    oh, ow = windows.out
    n, c = int(x.shape[0]), int(x.shape[1])

    def backward(g: TensorLike) -> tuple[TensorLike]:
        per_window = g.reshape(n, c, oh * ow, 1) * onehot
        return (windows.scatter(per_window),)

    return Variable.record(values.reshape(n, c, oh, ow), (x,), backward)


def avg_pool2d(x: Variable, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Variable:
    """``F.avg_pool2d`` (no padding): window means; the backward spreads ``g / (kh*kw)``."""
    windows = _pool_windows(x, kernel_size, stride, padding, 1, "avg_pool2d")
    oh, ow = windows.out
    n, c = int(x.shape[0]), int(x.shape[1])
    size = windows.kernel[0] * windows.kernel[1]

    def backward(g: TensorLike) -> tuple[TensorLike]:
        spread = _like(torch.full((size,), 1.0 / size, dtype=torch.float64), g)
        return (windows.scatter(g.reshape(n, c, oh * ow, 1) * spread),)

    value = windows.gather(x.value).sum(-1) * (1.0 / size)
    return Variable.record(value.reshape(n, c, oh, ow), (x,), backward)


# -- activations ---------------------------------------------------------------------------


def relu(x: Variable) -> Variable:
    """``max(x, 0)`` as ``x * d`` with ``d = [x >= 0]``; the backward reuses ``d``.

    Without a gradient to compute, the shared tensor's own ``relu`` (no product) is used.
    """
    if not x.requires_grad:
        value = x.value
        return Variable(value.relu() if isinstance(value, SharedTensor) else F.relu(value))
    bit = drelu(x.value)
    return Variable.record(_times(x.value, bit), (x,), lambda g: (_times(g, bit),))


def sigmoid(x: Variable) -> Variable:
    """``torch.sigmoid`` (the shared approximation on shares); backward ``g * s * (1 - s)``."""
    s = _sigmoid(x.value)
    return Variable.record(s, (x,), lambda g: (g * (s * (1 - s)),))


def softmax(x: Variable, dim: int) -> Variable:
    """``F.softmax``; backward ``s * (g - sum(g * s, dim))``."""
    s = _softmax(x.value, dim)
    return Variable.record(s, (x,), lambda g: (s * (g - (g * s).sum(dim, keepdim=True)),))


def log_softmax(x: Variable, dim: int) -> Variable:
    """``F.log_softmax``; backward ``g - exp(out) * sum(g, dim)`` (the exponential computed only then)."""
    xv = x.value
    out = _log_softmax(x.value, dim)
    return Variable.record(out, (x,), lambda g: (g - _times(_exp_nonpositive(out), g.sum(dim, keepdim=True)),))


# -- losses ----------------------------------------------------------------------------------


def mse_loss(x: Variable, target: Any) -> Variable:
    """Mean squared error; the value is computed when read, the backward needs only ``x - target``."""
    t = as_variable(target)
    if t.shape != x.shape:
        raise AutogradError(f"mse_loss of shapes {list(x.shape)} and {list(t.shape)}", {})
    diff = x.value - t.value
    scale = 2.0 / max(x.numel(), 1)

    def backward(g: TensorLike) -> tuple[TensorLike, TensorLike]:
        grad = diff * scale if is_unit(g) else diff * (g * scale)
        return grad, -grad

    return Variable.record(lambda: (diff * diff).mean(), (x, t), backward, shape=())


def cross_entropy(logits: Variable, target: Any) -> Variable:
    """Mean cross-entropy of (B, C) logits against class indices (public) or one-hot rows (shared or public).

    The backward is ``(softmax(logits) - onehot) / B``; the value (which
    needs a logarithm) is computed only when read.
    """
    if logits.dim() != 2:
        raise AutogradError(f"cross_entropy takes (B, C) logits, not {list(logits.shape)}", {})
    batch, classes = int(logits.shape[0]), int(logits.shape[1])
    xv = logits.value
    onehot = _one_hot(target, batch, classes)
    if isinstance(onehot, torch.Tensor):
        onehot = _like(onehot, xv)

    def backward(g: TensorLike) -> tuple[TensorLike]:
        delta = _softmax(xv, 1) - onehot
        return (delta * (1.0 / batch) if is_unit(g) else delta * (g * (1.0 / batch)),)

    def value() -> TensorLike:
        return -(_times(_log_softmax(xv, 1), onehot)).sum() * (1.0 / batch)

    return Variable.record(value, (logits,), backward, shape=())


def _one_hot(target: Any, batch: int, classes: int) -> TensorLike:
    value = target.value if isinstance(target, Variable) else target
    if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() == 1:
        if value.shape[0] != batch:
            raise AutogradError(f"cross_entropy: {value.shape[0]} targets for a batch of {batch}", {})
        return F.one_hot(value.to(torch.int64), classes).to(torch.float64)
    if isinstance(value, (torch.Tensor, SharedTensor)) and tuple(value.shape) == (batch, classes):
        return value
    raise AutogradError(
        f"cross_entropy targets: class indices of shape [{batch}] or one-hot rows of shape [{batch}, {classes}]", {}
    )


def _times(x: TensorLike, y: TensorLike) -> TensorLike:
    """``x * y`` with a shared operand on the left (so ``public * shared`` reaches the shared type's own mul)."""
    if isinstance(x, torch.Tensor) and isinstance(y, SharedTensor):
        return y * x
    return x * y
