"""Autograd on pointers: leaves that require grad, and what each result was computed from.

Runs in the user's process (remote training, :mod:`node.client.models` and
:mod:`node.client.optim`).  A pointer made a leaf that requires grad
(``requires_grad_``, or a sent model's parameter) is remembered by every
pointer computed from it (:func:`tracked`, called on every op's result), so
``loss.backward()`` knows which leaves to differentiate: it posts one
``grad`` command (the node's ``torch.autograd.grad``) and each leaf's
``.grad`` becomes (or is added to) a pointer to its new gradient object.
Nothing on the node is written into: pointers are re-aimed instead.

A mixin of :class:`~node.client.pointer.BasePointer` that holds the
autograd state (its slots), apart so the pointer module holds ops,
metadata and freeing only.  Only ``BasePointer`` mixes it in, so
``isinstance(x, PointerAutograd)`` is the pointer check without importing
the pointer module (which imports this one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .host import Host
    from .pointer import BasePointer

__all__ = ["PointerAutograd", "tracked"]


class PointerAutograd:
    """``requires_grad``, ``is_leaf``, ``grad``, ``requires_grad_`` and ``backward`` of a pointer."""

    __slots__ = ("_requires_grad", "_leaves", "_grad")

    _requires_grad: bool
    """A leaf that requires grad (made by ``requires_grad_`` or a sent model)."""
    _leaves: tuple[BasePointer, ...]
    """The leaves requiring grad this pointer's object was computed from."""
    _grad: BasePointer | None

    if TYPE_CHECKING:  # BasePointer's
        node: Host

        def _take_over(self, new: BasePointer) -> None: ...

    @property
    def requires_grad(self) -> bool:
        """Whether the object requires grad: a leaf marked so, or computed from one."""
        return self._requires_grad or bool(self._leaves)

    @property
    def is_leaf(self) -> bool:
        """Not computed from a tensor that requires grad (torch's meaning)."""
        return not self._leaves

    @property
    def grad(self) -> BasePointer | None:
        """Pointer to this leaf's accumulated gradient (set by :meth:`backward`), or None."""
        return self._grad

    @grad.setter
    def grad(self, value: BasePointer | None) -> None:
        if value is not None and (not isinstance(value, PointerAutograd) or value.node is not self.node):
            raise TypeError(f"the grad of a pointer on {self.node.id!r} must be a pointer on the same node, or None")
        self._grad = value

    def requires_grad_(self, requires_grad: bool = True) -> BasePointer:
        """Make this pointer a leaf that does (or does not) require grad; returns it.

        The node makes a new leaf object with the same data (op ``leaf``)
        and this pointer is re-aimed at it; the old object is freed if we
        own it.  As in torch, only leaves may change the flag.
        """
        if self._leaves:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf pointers; call .detach() first"
            )
        self._take_over(self.node.command("leaf", cast("BasePointer", self), (bool(requires_grad),), {}))
        self._requires_grad = bool(requires_grad)
        return cast("BasePointer", self)

    def backward(self, gradient: Any = None) -> None:
        """Run autograd on the node: every leaf this was computed from gets (or adds to) its ``.grad``.

        Posted like any op (one ``grad`` command; its failure surfaces at the
        next synchronisation point).  The gradients are new objects on the
        node whose read policy combines those of everything the loss used:
        a gradient of a loss on private data is as private as that data.
        """
        leaves = self._leaves or ((self,) if self._requires_grad else ())
        if not leaves:
            raise RuntimeError(
                f"{self!r} does not require grad: it was not computed from a leaf marked "
                "requires_grad_() or from a sent model's parameters"
            )
        args: tuple[Any, ...] = (self, list(leaves)) + (() if gradient is None else (gradient,))
        grads = self.node.command("grad", None, args, {})
        for leaf, grad in zip(leaves, grads if isinstance(grads, tuple) else (grads,)):
            leaf._grad = grad if leaf._grad is None else leaf._grad + grad



_NO_GRAD_OPS = frozenset(
    """
    eq ne lt le gt ge isclose isnan isinf isfinite logical_and logical_or logical_xor logical_not
    bitwise_and bitwise_or bitwise_xor bitwise_not sign floor ceil round trunc argmax argmin
    argsort argwhere count_nonzero all any int long short bool detach zeros_like ones_like
    full_like one_hot grad leaf
    """.split()
)
"""Ops whose results never require grad (torch gives them no history)."""


def _leaves_in(value: Any, found: dict[int, BasePointer]) -> None:
    if isinstance(value, PointerAutograd):
        if value._leaves:
            for leaf in value._leaves:
                found.setdefault(id(leaf), leaf)
        elif value._requires_grad:
            found.setdefault(id(value), cast("BasePointer", value))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _leaves_in(item, found)
    elif isinstance(value, dict):
        _leaves_in(list(value.values()), found)


def tracked(op: str, result: Any, sources: Any) -> Any:
    """``result`` (pointer or tuple of them), each told the leaves requiring grad among ``sources``."""
    if op in _NO_GRAD_OPS:
        return result
    found: dict[int, BasePointer] = {}
    _leaves_in(sources, found)
    if found:
        leaves = tuple(found.values())
        for pointer in result if isinstance(result, tuple) else (result,):
            if isinstance(pointer, PointerAutograd):
                pointer._leaves = leaves
    return result
