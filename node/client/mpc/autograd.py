"""Reverse-mode autograd over shared (or plain) tensors: :class:`Variable` and its tape.

Runs in the user's process.  A :class:`Variable` wraps a *tensor-like*: a
:class:`~node.client.mpc.shared.SharedTensor` or a plain ``torch.Tensor``
(a public constant, or a whole plaintext run).  Every op on variables
computes its value with the tensor-like's own operators and records, on the
result, its inputs and a closure mapping the result's gradient to theirs;
:meth:`Variable.backward` walks that tape once in reverse topological order
(CrypTen's ``AutogradCrypTensor``, PySyft 0.2's shared autograd).

The closures use only operations both kinds of tensor answer (``+ - *
@``, public scalars, ``sum``/``reshape``/``transpose``), so running the same
code on plain tensors must give ``torch.autograd``'s gradients: the tests
check that for every op, then run it on shares, where the results differ
only by fixed-point error.  Ops that keep secret intermediate values for
their backward (the ReLU bit, the pooling one-hots, softmax) are in
:mod:`node.client.mpc.autograd_layers`.

Nothing is reconstructed here: a shared gradient stays shared, and reading
``.grad.get()`` is subject to the nodes' read policies like any share.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch

from .group import SharingError
from .shared import SharedTensor

__all__ = ["AutogradError", "TensorLike", "Variable", "as_variable", "expand_to", "is_unit", "matmul", "unbroadcast"]

TensorLike = Union[torch.Tensor, SharedTensor]
"""A value a :class:`Variable` holds: shared, or a plain (public) tensor."""

Backward = Callable[[TensorLike], Sequence[TensorLike | None]]
"""Maps the gradient of an op's result to the gradients of its inputs (None: no gradient)."""


class AutogradError(SharingError):
    """A gradient cannot be computed as asked (no tape, a non-scalar without a gradient...)."""


class Variable:
    """A tensor-like with a gradient: ``requires_grad``, ``.grad``, and the op that made it.

    ``value`` may be computed on first use (a loss's value needs logarithms
    on shares, its gradient does not): :meth:`backward` never forces it.
    """

    __slots__ = ("_value", "_thunk", "_shape", "requires_grad", "grad", "_inputs", "_backward", "name")

    def __init__(self, value: TensorLike, requires_grad: bool = False, name: str | None = None) -> None:
        if isinstance(value, Variable):
            raise TypeError("Variable(value) takes a tensor or a shared tensor, not a Variable")
        if not isinstance(value, (torch.Tensor, SharedTensor)):
            raise TypeError(f"Variable(value) takes a tensor or a shared tensor, not {type(value).__name__}")
        self._value: TensorLike | None = value
        self._thunk: Callable[[], TensorLike] | None = None
        self._shape = torch.Size(value.shape)
        self.requires_grad = requires_grad
        self.grad: TensorLike | None = None
        """The accumulated gradient of a leaf after :meth:`backward` (shared when anything it came from was)."""
        self._inputs: tuple[Variable, ...] = ()
        self._backward: Backward | None = None
        self.name = name

    @classmethod
    def lazy(cls, thunk: Callable[[], TensorLike], shape: Sequence[int]) -> Variable:
        """A variable whose value is computed on first read of :attr:`value`."""
        out = cls.__new__(cls)
        out._value, out._thunk, out._shape = None, thunk, torch.Size(shape)
        out.requires_grad, out.grad, out._inputs, out._backward, out.name = False, None, (), None, None
        return out

    # -- value ---------------------------------------------------------------

    @property
    def value(self) -> TensorLike:
        if self._value is None:
            assert self._thunk is not None
            self._value, self._thunk = self._thunk(), None
        return self._value

    @value.setter
    def value(self, new: TensorLike) -> None:
        """Replace a leaf's value in place (an optimizer step); the shape may not change."""
        if torch.Size(new.shape) != self._shape:
            raise AutogradError(f"new value of shape {list(new.shape)} for a variable of shape {list(self._shape)}", {})
        self._value, self._thunk = new, None

    @property
    def shape(self) -> torch.Size:
        return self._shape

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self._shape if dim is None else self._shape[dim]

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        return self._shape.numel()

    @property
    def is_shared(self) -> bool:
        return isinstance(self.value, SharedTensor)

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def get(self) -> torch.Tensor:
        """The plaintext value: reconstructs a shared one (subject to every node's read policy)."""
        value = self.value
        return value.get() if isinstance(value, SharedTensor) else value.detach()

    def detach(self) -> Variable:
        return Variable(self.value)

    def __repr__(self) -> str:
        kind = "lazy" if self._value is None else "shared" if isinstance(self._value, SharedTensor) else "plain"
        return f"<Variable {list(self._shape)} {kind} requires_grad={self.requires_grad}>"

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a variable is not defined; call .get() first")

    # -- the tape ----------------------------------------------------------------

    @staticmethod
    def record(
        value: TensorLike | Callable[[], TensorLike],
        inputs: Sequence[Variable],
        backward: Backward,
        shape: Sequence[int] | None = None,
    ) -> Variable:
        """The result of an op: on the tape when any input requires a gradient.

        ``value`` may be a function computing it on first read (then ``shape`` is given).
        """
        if callable(value):
            assert shape is not None
            out = Variable.lazy(value, shape)
        else:
            out = Variable(value)
        if any(v.requires_grad for v in inputs):
            out.requires_grad, out._inputs, out._backward = True, tuple(inputs), backward
        return out

    def backward(self, grad: TensorLike | None = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` that requires one.

        ``grad`` defaults to 1 for a one-element result.  The tape is freed
        afterwards unless ``retain_graph``.
        """
        if not self.requires_grad:
            raise AutogradError("backward() on a value that does not require a gradient (no parameter led to it)", {})
        if grad is None:
            if self.numel() != 1:
                raise AutogradError(f"backward() of a tensor of shape {list(self._shape)} needs a gradient argument", {})
            grad = torch.ones(self._shape, dtype=_seed_dtype(self))
        order = _topological(self)
        grads: dict[int, TensorLike] = {id(self): grad}
        for var in reversed(order):
            g = grads.pop(id(var), None)
            if g is None:
                continue
            if var._backward is None:
                var.grad = g if var.grad is None else var.grad + g
                continue
            for parent, pg in zip(var._inputs, var._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            if not retain_graph:
                var._inputs, var._backward = (), None

    # -- operators -------------------------------------------------------------------

    def __add__(self, other: Any) -> Variable:
        b = as_variable(other)
        sa, sb = self.shape, b.shape
        return Variable.record(self.value + b.value, (self, b), lambda g: (unbroadcast(g, sa), unbroadcast(g, sb)))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Variable:
        b = as_variable(other)
        sa, sb = self.shape, b.shape
        return Variable.record(self.value - b.value, (self, b), lambda g: (unbroadcast(g, sa), unbroadcast(-g, sb)))

    def __rsub__(self, other: Any) -> Variable:
        return as_variable(other) - self

    def __neg__(self) -> Variable:
        return Variable.record(-self.value, (self,), lambda g: (-g,))

    def __mul__(self, other: Any) -> Variable:
        b = as_variable(other)
        x, y = self.value, b.value
        sa, sb = self.shape, b.shape

        def backward(g: TensorLike) -> tuple[TensorLike | None, TensorLike | None]:
            ga = unbroadcast(g * y, sa) if self.requires_grad else None
            gb = unbroadcast(g * x, sb) if b.requires_grad else None
            return ga, gb

        return Variable.record(_mul(x, y), (self, b), backward)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Variable:
        if isinstance(other, (Variable, SharedTensor)):
            raise TypeError("division by a variable is not supported; divide by a public number")
        return self * (1.0 / float(other))

    def __matmul__(self, other: Any) -> Variable:
        return matmul(self, as_variable(other))

    def __rmatmul__(self, other: Any) -> Variable:
        return matmul(as_variable(other), self)

    def sum(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> Variable:
        shape = self.shape
        kept = _kept_shape(shape, dim) if dim is not None and not keepdim else None

        def backward(g: TensorLike) -> tuple[TensorLike]:
            if kept is not None:
                g = g.reshape(kept)
            return (expand_to(g, shape),)

        value = self.value.sum() if dim is None else self.value.sum(dim, keepdim=keepdim)
        return Variable.record(value, (self,), backward)

    def mean(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> Variable:
        total = self.sum(dim, keepdim)
        count = self.numel() // max(total.numel(), 1)
        return total * (1.0 / max(count, 1))

    def reshape(self, *shape: Any) -> Variable:
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        old = self.shape
        return Variable.record(self.value.reshape(dims), (self,), lambda g: (g.reshape(old),))

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Variable:
        new = torch.empty(self.shape, device="meta").flatten(start_dim, end_dim).shape
        return self.reshape(tuple(new))

    def transpose(self, dim0: int, dim1: int) -> Variable:
        return Variable.record(self.value.transpose(dim0, dim1), (self,), lambda g: (g.transpose(dim0, dim1),))

    def t(self) -> Variable:
        if self.dim() != 2:
            raise AutogradError(f"t() takes a 2-D variable, not {self.dim()}-D", {})
        return self.transpose(0, 1)

    @property
    def T(self) -> Variable:  # noqa: N802 - torch's name
        return self.t()


def as_variable(value: Any) -> Variable:
    """``value`` as a variable: a constant (no gradient) unless it already is one."""
    if isinstance(value, Variable):
        return value
    if isinstance(value, (torch.Tensor, SharedTensor)):
        return Variable(value)
    if isinstance(value, (int, float, bool)):
        return Variable(torch.tensor(value, dtype=torch.float64 if isinstance(value, float) else torch.int64))
    raise TypeError(f"cannot use a {type(value).__name__} as a tensor")


def matmul(a: Variable, b: Variable) -> Variable:
    """``a @ b`` for operands of 2 or more dims (batched operands broadcast)."""
    if a.dim() < 2 or b.dim() < 2:
        raise AutogradError(f"matmul of variables needs operands of 2 or more dims, got {a.dim()}-D @ {b.dim()}-D", {})
    x, y = a.value, b.value
    sa, sb = a.shape, b.shape

    def backward(g: TensorLike) -> tuple[TensorLike | None, TensorLike | None]:
        ga = unbroadcast(g @ y.transpose(-1, -2), sa) if a.requires_grad else None
        gb = unbroadcast(x.transpose(-1, -2) @ g, sb) if b.requires_grad else None
        return ga, gb

    return Variable.record(x @ y, (a, b), backward)


def unbroadcast(grad: TensorLike, shape: Sequence[int]) -> TensorLike:
    """Sum ``grad`` over the dims broadcasting added, back to ``shape``."""
    shape = torch.Size(shape)
    if torch.Size(grad.shape) == shape:
        return grad
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad


def expand_to(grad: TensorLike, shape: Sequence[int]) -> TensorLike:
    """Broadcast ``grad`` to ``shape`` (a product with public integer ones: exact on shares)."""
    shape = torch.Size(shape)
    if torch.Size(grad.shape) == shape:
        return grad
    return grad * torch.ones(shape, dtype=torch.int64)


def is_unit(grad: TensorLike) -> bool:
    """Whether ``grad`` is a public 1 (backward's seed): loss functions then skip multiplying by it."""
    return isinstance(grad, torch.Tensor) and grad.numel() == 1 and bool(grad.reshape(()) == 1)


def _seed_dtype(var: Variable) -> torch.dtype:
    value = var._value
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.dtype
    return torch.float64


def _mul(x: TensorLike, y: TensorLike) -> TensorLike:
    if isinstance(x, torch.Tensor) and isinstance(y, SharedTensor):
        return y * x
    return x * y


def _kept_shape(shape: torch.Size, dim: int | tuple[int, ...]) -> torch.Size:
    dims = {d % len(shape) for d in ((dim,) if isinstance(dim, int) else dim)} if shape else set()
    return torch.Size(1 if i in dims else n for i, n in enumerate(shape))


def _topological(root: Variable) -> list[Variable]:
    """Every variable on ``root``'s tape, inputs before the ops that used them (iterative DFS)."""
    order: list[Variable] = []
    seen: set[int] = set()
    stack: list[tuple[Variable, bool]] = [(root, False)]
    while stack:
        var, done = stack.pop()
        if done:
            order.append(var)
            continue
        if id(var) in seen:
            continue
        seen.add(id(var))
        stack.append((var, True))
        stack.extend((p, False) for p in var._inputs if p.requires_grad and id(p) not in seen)
    return order
