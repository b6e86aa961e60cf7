"""A stand-in for a shared tensor that counts online rounds (the depth of dependent secure steps).

It holds the real values in the clear and a depth: a comparison (``drelu``)
adds 1 to its input's depth, ``relu`` 2 (as the 2-party FSS route), a
product of two such values 1 more than the deeper operand; linear and
public ops add nothing.  Running a function of :mod:`node.client.mpc` on it
gives the function's online rounds with 2 parties when every step is posted
without waiting (the client pipelines them).  Only for tests.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

RELU_ROUNDS = 2


class FakeGroup:
    ids = ("p0", "p1")

    def check_same(self, other: FakeGroup, op: str) -> None:
        del other, op


GROUP = FakeGroup()


class Depth:
    """Values and the rounds needed to have them."""

    def __init__(self, group: FakeGroup, shares: Sequence[Depth], shape: Sequence[int], precision: int,
                 dtype: torch.dtype) -> None:
        (share,) = shares
        self.group, self.precision, self.dtype = group, precision, dtype
        self.data = share.data * 2.0 ** (share.precision - precision)  # as_precision relabels scaled integers
        self.depth = share.depth
        assert tuple(self.data.shape) == tuple(shape)

    @classmethod
    def of(cls, data: torch.Tensor, depth: int = 0, precision: int = 16, dtype: torch.dtype = torch.float32) -> Depth:
        made = cls.__new__(cls)
        made.group, made.precision, made.dtype = GROUP, precision, dtype
        made.data, made.depth = data.to(torch.float64), depth
        return made

    def _with(self, data: torch.Tensor, depth: int, precision: int | None = None) -> Depth:
        return Depth.of(data, depth, self.precision if precision is None else precision, self.dtype)

    @property
    def shares(self) -> dict[str, Depth]:
        return {"p0": self}

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def dim(self) -> int:
        return self.data.dim()

    def numel(self) -> int:
        return self.data.numel()

    def drelu(self) -> Depth:
        return Depth.of((self.data >= 0).to(torch.float64), self.depth + 1, 0, torch.bool)

    def relu(self) -> Depth:
        return self._with(torch.relu(self.data), self.depth + RELU_ROUNDS)

    def _binary(self, other: Any, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], product: bool) -> Depth:
        if isinstance(other, Depth):
            depth = max(self.depth, other.depth) + (1 if product else 0)
            return self._with(fn(self.data, other.data), depth, max(self.precision, other.precision))
        return self._with(fn(self.data, torch.as_tensor(other, dtype=torch.float64)), self.depth)

    def __add__(self, other: Any) -> Depth:
        return self._binary(other, torch.add, False)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Depth:
        return self._binary(other, torch.sub, False)

    def __rsub__(self, other: Any) -> Depth:
        return (-self) + other

    def __neg__(self) -> Depth:
        return self._with(-self.data, self.depth)

    def __mul__(self, other: Any) -> Depth:
        return self._binary(other, torch.mul, True)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Depth:
        return self._binary(1.0 / torch.as_tensor(other, dtype=torch.float64), torch.mul, False)

    def __getitem__(self, index: Any) -> Depth:
        return self._with(self.data[index], self.depth)

    def reshape(self, *shape: Any) -> Depth:
        return self._with(self.data.reshape(*shape), self.depth)

    def transpose(self, a: int, b: int) -> Depth:
        return self._with(self.data.transpose(a, b), self.depth)

    def sum(self, dim: Any = None, keepdim: bool = False) -> Depth:
        data = self.data.sum() if dim is None else self.data.sum(dim, keepdim=keepdim)
        return self._with(data, self.depth)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Depth:
        data = self.data.mean() if dim is None else self.data.mean(dim, keepdim=keepdim)
        return self._with(data, self.depth)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        """``tensor op depth``: the reflected op of the Depth operand."""
        a, b = args
        name = getattr(func, "__name__", "")
        reflected = {"__add__": "__radd__", "add": "__radd__", "__sub__": "__rsub__", "sub": "__rsub__",
                     "__mul__": "__rmul__", "mul": "__rmul__"}
        if isinstance(b, Depth) and name in reflected:
            return getattr(b, reflected[name])(a)
        raise TypeError(f"{name} is not modelled by Depth")
