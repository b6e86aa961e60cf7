"""Remote models: PySyft 0.2's ``model.send(bob)`` ... ``model.get()``, over pointers.

:func:`send_model` stores each parameter and buffer of a ``torch.nn.Module``
on a node and keeps, for each, a pointer (a leaf that requires grad when the
parameter does).  The module keeps its own ``nn.Parameter`` objects, so an
optimiser built before or after the send (``node.optim.SGD(model.parameters())``,
PySyft's tutorial builds it once and sends the model every iteration) goes on
naming the same parameters; :func:`pointer_of` finds a parameter's pointer.
While the model is sent, calling it (or any of its submodules) runs the
forward with the pointers in place of its tensors: each submodule swaps its
own tensors for their pointers just before its ``forward`` and back right
after (forward hooks, the second one ``always_call``, so a failing forward
restores them too), so ``F.linear(x, self.weight, self.bias)`` with a data
pointer ``x`` becomes one ``linear`` command on the data's node.  The local
tensors keep the values they had when sent until :func:`get_model` writes
the trained values into them.

Read policies decide what comes back: a parameter stepped with gradients of a
loss on data we may not read carries that data's restriction (the node
combines the policies of every input of every command), so :func:`get_model`
raises the node's ``PermissionDenied`` until the data's owner releases it,
and leaves the model where it is.  ``hook_torch()`` adds ``nn.Module.send``,
``get`` and ``move`` calling these functions.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .host import Handle
from .pointer import Pointer

__all__ = ["send_model", "get_model", "move_model", "model_location", "pointer_of"]

class _ByTensor:
    """Sent tensor object -> its pointer, by identity (a tensor's ``==`` is elementwise,
    so a ``WeakKeyDictionary`` cannot hold tensors); an entry goes with its tensor."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[torch.Tensor], Pointer]] = {}

    def get(self, tensor: torch.Tensor) -> Pointer | None:
        entry = self._entries.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def __setitem__(self, tensor: torch.Tensor, pointer: Pointer) -> None:
        key = id(tensor)
        entries = self._entries

        def forget(ref: weakref.ref[torch.Tensor]) -> None:
            if entries.get(key, (None,))[0] is ref:
                del entries[key]

        entries[key] = (weakref.ref(tensor, forget), pointer)

    def pop(self, tensor: torch.Tensor) -> None:
        if self.get(tensor) is not None:
            del self._entries[id(tensor)]


_POINTERS = _ByTensor()
"""Each sent parameter or buffer (the module's own tensor object) -> its pointer."""


@dataclass
class _Slot:
    """One tensor of one submodule: where it sits (``_parameters`` or ``_buffers``) and its pointer."""

    module: nn.Module
    table: str
    name: str
    local: torch.Tensor
    pointer: Pointer


@dataclass
class _Placement:
    """A sent model: its node, its tensors' slots and the hooks that swap them."""

    node: Handle
    slots: list[_Slot]
    hooks: list[RemovableHandle] = field(default_factory=list)


_SENT: weakref.WeakKeyDictionary[nn.Module, _Placement] = weakref.WeakKeyDictionary()


def pointer_of(tensor: torch.Tensor) -> Pointer | None:
    """The pointer standing for a sent model's parameter or buffer, or None if it is local."""
    return _POINTERS.get(tensor)


def model_location(model: nn.Module) -> Handle | None:
    """The node ``model`` was sent to, or None when it is local."""
    placement = _SENT.get(model)
    return None if placement is None else placement.node


def send_model(model: nn.Module, node: Handle) -> nn.Module:
    """Store ``model``'s parameters and buffers on ``node`` as pointers; returns ``model``.

    Parameters that require grad become leaves that require grad on the
    node.  Sending a model already on ``node`` does nothing; on another
    node it is moved (:func:`move_model`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"send_model() takes a torch.nn.Module, not {type(model).__name__}")
    placement = _SENT.get(model)
    if placement is not None:
        return model if placement.node is node else move_model(model, node)
    slots: list[_Slot] = []
    for module, table, name, local in _tensors_of(model):
        pointer = _POINTERS.get(local)
        if pointer is None or pointer.node is not node:  # a tied tensor is sent once
            pointer = node.send(local.detach())
            if local.requires_grad:
                pointer.requires_grad_(True)
            _POINTERS[local] = pointer
        slots.append(_Slot(module, table, name, local, pointer))
    placement = _Placement(node, slots)
    for module in {id(slot.module): slot.module for slot in slots}.values():
        own = [slot for slot in slots if slot.module is module]
        placement.hooks.append(module.register_forward_pre_hook(_Swap(own, remote=True)))
        placement.hooks.append(module.register_forward_hook(_Swap(own, remote=False), always_call=True))
    _SENT[model] = placement
    return model


def get_model(model: nn.Module, delete: bool = False) -> nn.Module:
    """Bring ``model``'s parameters and buffers back into its own tensors; returns ``model``.

    All values are fetched before any is written, so a refusal (the node's
    ``PermissionDenied`` for parameters trained on data we may not read)
    leaves the model sent and unchanged.  The remote objects are freed
    (at once with ``delete=True``, else with the next batch of deletes).
    """
    placement = _placement(model)
    values = [slot.pointer.get(delete) for slot in placement.slots]
    with torch.no_grad():
        for slot, value in zip(placement.slots, values):
            slot.local.data = value.to(slot.local.dtype)
    for hook in placement.hooks:
        hook.remove()
    for slot in placement.slots:
        _POINTERS.pop(slot.local)
    del _SENT[model]
    return model


def move_model(model: nn.Module, node: Handle) -> nn.Module:
    """Move a sent model's tensors to ``node`` (node to node, see ``Pointer.move``); returns ``model``.

    Leaves stay leaves requiring grad; gradients stay behind (``.grad``
    is None after the move, as after ``zero_grad``).
    """
    placement = _placement(model)
    moved: set[int] = set()
    for slot in placement.slots:
        if id(slot.pointer) not in moved:
            slot.pointer.move(node)
            moved.add(id(slot.pointer))
    placement.node = node
    return model


def _placement(model: nn.Module) -> _Placement:
    placement = _SENT.get(model)
    if placement is None:
        raise ValueError(f"this {type(model).__name__} is not on a node; call model.send(node) first")
    return placement


def _tensors_of(model: nn.Module) -> Iterator[tuple[nn.Module, str, str, torch.Tensor]]:
    for module in model.modules():
        for table in ("_parameters", "_buffers"):
            for name, tensor in getattr(module, table).items():
                if tensor is not None:
                    yield module, table, name, tensor


class _Swap:
    """A forward hook putting a submodule's pointers (``remote``) or its own tensors in place."""

    def __init__(self, slots: list[_Slot], remote: bool) -> None:
        self.slots = slots
        self.remote = remote

    def __call__(self, module: nn.Module, *_: object) -> None:
        for slot in self.slots:
            getattr(module, slot.table)[slot.name] = slot.pointer if self.remote else slot.local
