"""Pointers: handles on tensors that live on a node.

A pointer behaves like the tensor it names for every op in the allowlist:
Python operators, the allowlisted tensor methods (generated from
:data:`protocol.ops.OPS`), and ``torch.*`` / ``torch.nn.functional.*`` calls
through ``__torch_function__`` (so ``torch.cat([p, q])`` works without
patching torch).  Each op is sent as a command and returns new pointers at
once; the data never moves until :meth:`Pointer.get`.  Dropping the last
reference to a pointer frees the remote object (deletes are batched).

:class:`BasePointer` is what every pointer shares (ops, metadata, freeing);
:class:`Pointer` adds the blocking methods of a synchronous node (``get``,
``release``, ``move``, ``copy_to``, ``share``); the asyncio client's
pointers await instead (:mod:`node.client.aio`).  A pointer talks to its
node only through the :mod:`~node.client.host` protocols, so this module
imports no handle, and nothing of secret sharing.

Autograd (remote training: ``requires_grad_``, ``backward``, ``.grad``) is
:mod:`node.client.pointer_autograd`, mixed into :class:`BasePointer`; every
op's result is passed through its ``tracked``.

Nothing here blocks except ``get``, ``release``, ``shape``/``dtype`` (one
round trip, then cached) and iteration.  Printing a pointer never asks the
node anything: ``repr`` shows what is already known (id, location, dtype
and shape, owner, private), never data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from protocol.ids import ObjectId
from protocol.messages import ObjectInfo
from protocol.ops import OPS, OpForm, OpSpec
from protocol.tensors import DTYPES

from .pointer_autograd import PointerAutograd, tracked
from .torch_functions import route_for_torch_function, wire_index, wire_kwargs

if TYPE_CHECKING:
    from .host import Handle, Host
    from .mpc.shared import SharedTensor

__all__ = ["BasePointer", "Pointer"]


class BasePointer(PointerAutograd):
    """A remote tensor on ``node``, named by ``object_id``: what every pointer shares."""

    __slots__ = ("node", "object_id", "_info", "_owned", "__weakref__")

    def __init__(
        self,
        node: Host,
        object_id: ObjectId,
        info: ObjectInfo | None = None,
        owned: bool = True,
    ) -> None:
        self.node = node
        self.object_id = object_id
        self._info = info
        self._owned = owned
        """Whether dropping the pointer frees the object (not for others' objects)."""
        self._requires_grad = False
        self._leaves = ()
        self._grad = None

    def __del__(self) -> None:
        if getattr(self, "_owned", False):
            self.node.drop(self.object_id)

    # -- metadata ------------------------------------------------------------

    def remember(self, info: ObjectInfo) -> None:
        """Cache the object's metadata, as a ``describe`` answered it."""
        self._info = info

    def delete(self) -> None:
        """Free the remote object now instead of when the pointer is dropped."""
        self.node.drop(self.object_id)
        self.node.flush_drops()

    @property
    def _private(self) -> bool:
        return self._info is not None and self._info.private

    def describe(self) -> ObjectInfo:
        """Dtype and shape, fetched once without moving the data."""
        if self._info is None:
            self._info = self.node.object_info(self)
        return self._info

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.describe().shape)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.describe().dtype]

    @property
    def location(self) -> str:
        """Id of the node holding the object."""
        return self.node.id

    def size(self, dim: int | None = None) -> torch.Size | int:
        shape = self.shape
        return shape if dim is None else shape[dim]

    def dim(self) -> int:
        return len(self.shape)

    ndim = property(dim)

    def numel(self) -> int:
        return self.shape.numel()

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def __iter__(self) -> Iterator[Any]:
        for index in range(len(self)):
            yield self[index]

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a remote tensor is unknown here; call .get() first"
        )

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        """Id, location and what is already known; never a round trip, never data."""
        detail = ""
        info = self._info
        if info is not None:
            detail = f" {info.dtype}{list(info.shape)}"
            if info.private:
                detail += " private"
            if info.owner and info.owner != self.node.principal:
                detail += f" owner={info.owner}"
            if not info.readable:
                detail += " unreadable"
        return f"<Pointer {self.node.id}:{self.object_id:#018x}{detail}>"

    def __copy__(self) -> BasePointer:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> BasePointer:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("pointers cannot be pickled; they are bound to a live connection")

    def _take_over(self, new: BasePointer) -> None:
        """Re-aim this pointer at ``new``'s object (freeing ours if we own it); ``new`` must not free it."""
        if self._owned and new.object_id != self.object_id:
            self.node.drop(self.object_id)
        self.node, self.object_id, self._info = new.node, new.object_id, new._info
        self._owned, new._owned = True, False

    # -- ops ---------------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        return tracked("getitem", self.node.command("getitem", self, (wire_index(index),), {}), (self,))

    @property
    def T(self) -> Any:  # noqa: N802 - torch's name
        return tracked("t", self.node.command("t", self, (), {}), (self,))

    @property
    def mT(self) -> Any:  # noqa: N802 - torch's name
        return tracked("mT", self.node.command("mT", self, (), {}), (self,))

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """Route ``torch.f(pointer, ...)`` (and ``tensor + pointer``) to the remote op.

        Torch reports tensor methods too (``t + p`` arrives as
        ``Tensor.add(t, p)``): those run in method form when the first
        argument is a pointer, else in function form where the op has one,
        else the local tensor is sent first and becomes the target.
        """
        route = route_for_torch_function(func)
        if route is None:
            return _unsupported(getattr(func, "__qualname__", repr(func)))
        op, form = route
        pointer = _first_pointer((args, kwargs or {}))
        if pointer is None:
            return NotImplemented
        host, wire = pointer.node, wire_kwargs(kwargs)
        sources = (args, kwargs)
        if form is OpForm.METHOD:
            first, rest = args[0], tuple(args[1:])
            if isinstance(first, BasePointer):
                return tracked(op, host.command(op, first, rest, wire), sources)
            if not OPS[op].function:
                return tracked(op, host.command(op, host.send(first), rest, wire), sources)
        result = tracked(op, host.command(op, None, tuple(args), wire), sources)
        if op == "grad" and not isinstance(result, tuple):
            return (result,)  # torch.autograd.grad always gives a tuple
        return result

    if TYPE_CHECKING:  # generated methods, one per METHOD-form op in OPS

        def __getattr__(self, name: str) -> Callable[..., Any]: ...


class Pointer(BasePointer):
    """A pointer on a synchronous node (``node.connect``, ``VirtualNode``): blocking methods."""

    __slots__ = ()

    node: Handle

    def __init__(
        self,
        node: Handle,
        object_id: ObjectId,
        info: ObjectInfo | None = None,
        owned: bool = True,
    ) -> None:
        super().__init__(node, object_id, info, owned)

    def get(self, delete: bool = False) -> torch.Tensor:
        """Bring the value back (blocking).  ``delete=True`` frees it on the node."""
        return self.node.fetch(self, delete)

    def release(self, principal: str) -> None:
        """Let ``principal`` read the object (blocking; PermissionDenied unless our data is in it).

        For a result computed from several principals' data, each of them
        must release it before ``principal`` can ``get`` it.  With an async
        node, await it.
        """
        self.node.grant(self, principal)

    def move(self, node: Handle) -> Pointer:
        """Move the object to ``node``, node to node; this pointer then points there.

        The data goes straight from the current node to ``node`` over a
        node-to-node TLS link; it never passes through this process.  A
        leaf that requires grad stays one there; autograd history does not
        travel (a computed pointer arrives as a plain tensor) and neither
        does ``.grad`` (it is reset to None, the gradient staying behind).
        """
        if node is self.node:
            return self
        if self.node.in_process or node.in_process:
            new = node.send(self.get(), private=self._private)
            self.node.drop(self.object_id)
        else:
            new = Pointer(node, self.node.transfer(self, node, delete_source=True), self._info)
        # Take over the new object's identity; ``new`` must not free it on drop.
        self.node, self.object_id, self._info = new.node, new.object_id, new._info
        self._owned, new._owned = True, False
        self._leaves, self._grad = (), None
        if self._requires_grad:
            self._take_over(node.command_one("leaf", self, (True,), {}))
        return self

    def copy_to(self, node: Handle) -> Pointer:
        """Copy the object to ``node``, node to node; returns a pointer to the copy."""
        if self.node.in_process or node.in_process:
            return node.send(self.get(), private=self._private)
        return Pointer(node, self.node.transfer(self, node, delete_source=False), self._info)

    def share(self, *parties: Handle, crypto_provider: Handle | None = None, **options: Any) -> SharedTensor:
        """Secret-share the object between ``parties``: its node splits it and sends each share.

        The data never passes through this process (see :func:`node.share`
        for ``precision``, ``truncation`` and ``timeout``); returns a
        :class:`~node.SharedTensor`.
        """
        return self.node.share_pointer(self, parties, crypto_provider, options)


def _unsupported(name: str) -> Any:
    raise TypeError(
        f"{name} is not in Tessera's op allowlist; see protocol/PROTOCOL.md for the ops "
        "a node runs"
    )


def _first_pointer(value: Any) -> BasePointer | None:
    if isinstance(value, BasePointer):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_pointer(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_pointer(list(value.values()))
    return None


def _method(spec: OpSpec) -> Callable[..., Any]:
    name = spec.name

    def method(self: BasePointer, *args: Any, **kwargs: Any) -> Any:
        return tracked(name, self.node.command(name, self, args, kwargs), (self, args, kwargs))

    method.__name__ = name
    method.__qualname__ = f"Pointer.{name}"
    method.__doc__ = f"Remote ``{name}``: {spec.doc}."
    return method


_OPERATORS: dict[str, str] = {
    "__add__": "add",
    "__radd__": "radd",
    "__sub__": "sub",
    "__rsub__": "rsub",
    "__mul__": "mul",
    "__rmul__": "rmul",
    "__truediv__": "div",
    "__rtruediv__": "rtruediv",
    "__floordiv__": "floor_divide",
    "__rfloordiv__": "rfloordiv",
    "__mod__": "remainder",
    "__rmod__": "rmod",
    "__pow__": "pow",
    "__rpow__": "rpow",
    "__matmul__": "matmul",
    "__rmatmul__": "rmatmul",
    "__eq__": "eq",
    "__ne__": "ne",
    "__lt__": "lt",
    "__le__": "le",
    "__gt__": "gt",
    "__ge__": "ge",
    "__and__": "bitwise_and",
    "__rand__": "bitwise_and",
    "__or__": "bitwise_or",
    "__ror__": "bitwise_or",
    "__xor__": "bitwise_xor",
    "__rxor__": "bitwise_xor",
    "__neg__": "neg",
    "__abs__": "abs",
    "__invert__": "bitwise_not",
}


def _install() -> None:
    for spec in OPS.values():
        if spec.method and not hasattr(BasePointer, spec.name):
            setattr(BasePointer, spec.name, _method(spec))
    for dunder, op in _OPERATORS.items():
        if op not in OPS or not OPS[op].method:
            raise RuntimeError(f"operator {dunder} maps to {op}, which is not a method op")
        spec = OPS[op]
        method = _method(spec)
        method.__name__ = dunder
        setattr(BasePointer, dunder, method)
    setattr(BasePointer, "__pos__", lambda self: self)


_install()
