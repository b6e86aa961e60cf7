"""Result shapes of the bilinear maps, computed from the shapes alone.

Owns :func:`broadcast_shape`, :func:`matmul_shape`, :func:`conv2d_shape`,
:func:`bilinear_shape` and :func:`reduced_shape` (a sum over dims, whose meta
kernel imports sympy on first use), which follow torch's rules (broadcasting, matmul's
1-d and batched forms, conv2d's output size) and raise ``ValueError``
naming the problem.  Plain Python on tuples: the first torch op on meta
tensors in a process costs seconds (it loads torch's Python meta kernels,
measured at 0.4-1.8 s per op kind on this project's machine), which every
party, the dealer and the client would otherwise pay on their first
product.  Must not import asyncio, websockets, or anything of
``node.server`` / ``node.client``.
"""

from __future__ import annotations

from typing import Sequence

from .ring import BilinearOp, ConvParams

__all__ = ["broadcast_shape", "matmul_shape", "conv2d_shape", "bilinear_shape", "reduced_shape"]

Shape = tuple[int, ...]


def broadcast_shape(x: Sequence[int], y: Sequence[int]) -> Shape:
    """The shape ``x`` and ``y`` broadcast to (ValueError if they do not)."""
    out: list[int] = []
    for i in range(1, max(len(x), len(y)) + 1):
        a = x[-i] if i <= len(x) else 1
        b = y[-i] if i <= len(y) else 1
        if a != b and a != 1 and b != 1:
            raise ValueError(f"shapes {list(x)} and {list(y)} do not broadcast")
        out.append(b if a == 1 else a)
    return tuple(reversed(out))


def matmul_shape(x: Sequence[int], y: Sequence[int]) -> Shape:
    """The shape of ``torch.matmul`` of operands of these shapes."""
    if not x or not y:
        raise ValueError("matmul needs operands of at least 1 dimension")
    inner_x = x[-1]
    inner_y = y[0] if len(y) == 1 else y[-2]
    if inner_x != inner_y:
        raise ValueError(f"matmul of shapes {list(x)} and {list(y)}: inner dimensions differ")
    if len(x) == 1 and len(y) == 1:
        return ()
    if len(y) == 1:
        return tuple(x[:-1])
    if len(x) == 1:
        return (*y[:-2], y[-1])
    return (*broadcast_shape(x[:-2], y[:-2]), x[-2], y[-1])


def conv2d_shape(x: Sequence[int], w: Sequence[int], params: ConvParams) -> Shape:
    """The shape of ``conv2d`` of a 4-d input and a 4-d weight."""
    if len(x) != 4 or len(w) != 4:
        raise ValueError("conv2d needs a 4-d input (N, C, H, W) and a 4-d weight")
    if x[1] != w[1] * params.groups or w[0] % params.groups:
        raise ValueError(
            f"conv2d with {params.groups} group(s) cannot take input {list(x)} and weight {list(w)}"
        )
    sizes = []
    for axis in range(2):
        extent = x[2 + axis] + 2 * params.padding[axis] - params.dilation[axis] * (w[2 + axis] - 1) - 1
        if extent < 0:
            raise ValueError(f"conv2d kernel {list(w[2:])} is larger than the padded input {list(x[2:])}")
        sizes.append(extent // params.stride[axis] + 1)
    return (x[0], w[0], sizes[0], sizes[1])


def bilinear_shape(op: BilinearOp, x: Sequence[int], y: Sequence[int], params: ConvParams | None = None) -> Shape:
    """The shape of ``op(x, y)``."""
    if op is BilinearOp.MUL:
        return broadcast_shape(x, y)
    if op is BilinearOp.MATMUL:
        return matmul_shape(x, y)
    return conv2d_shape(x, y, params if params is not None else ConvParams())


def reduced_shape(shape: Sequence[int], dim: int | Sequence[int], keepdim: bool = False) -> Shape:
    """The shape of ``sum(dim=dim, keepdim=keepdim)`` (IndexError or ValueError naming the problem).

    An empty ``dim`` reduces every dimension, as in torch; a 0-d shape takes
    dim 0 or -1.
    """
    rank = len(shape)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        dims = tuple(range(rank))
    span = max(rank, 1)
    chosen: list[int] = []
    for d in dims:
        if not isinstance(d, int) or not -span <= d < span:
            raise IndexError(
                f"Dimension out of range (expected to be in range of [{-span}, {span - 1}], but got {d})"
            )
        if d % span in chosen:
            raise ValueError(f"dim {d % span} appears multiple times in the list of dims")
        chosen.append(d % span)
    if rank == 0:
        return ()
    if keepdim:
        return tuple(1 if i in chosen else size for i, size in enumerate(shape))
    return tuple(size for i, size in enumerate(shape) if i not in chosen)
