"""``hook_torch()``: PySyft-style ``tensor.send(node)``, ``tensor.share(...)`` and ``model.send(node)``.

PySyft 0.2 replaced most of torch's namespace; we add five methods, and only
those: ``torch.Tensor.send`` and ``torch.Tensor.share``, and
``torch.nn.Module.send``, ``get`` and ``move`` (remote training,
:mod:`node.client.models`).  Pointer ops need no hook at all: they go
through ``__torch_function__``, and a sent model's forward through its own
forward hooks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .host import Handle
from .models import get_model, move_model, send_model
from .mpc.sharing import share
from .pointer import Pointer

__all__ = ["hook_torch"]


def _send(self: torch.Tensor, node: Handle) -> Pointer:
    """Send this tensor to ``node``; returns a :class:`~node.Pointer`."""
    return node.send(self)


def _share(self: torch.Tensor, *parties: Handle, **options: Any) -> Any:
    """Secret-share this tensor between ``parties`` (see :func:`node.share`)."""
    return share(self, *parties, **options)


def _send_model(self: nn.Module, node: Handle) -> nn.Module:
    """Put this model's parameters on ``node`` as pointers (see :func:`node.send_model`)."""
    return send_model(self, node)


def _get_model(self: nn.Module, delete: bool = False) -> nn.Module:
    """Bring this sent model's parameters back (PermissionDenied if trained on data we may not read)."""
    return get_model(self, delete)


def _move_model(self: nn.Module, node: Handle) -> nn.Module:
    """Move this sent model's parameters to ``node``, node to node."""
    return move_model(self, node)


_METHODS: tuple[tuple[type, str, Any], ...] = (
    (torch.Tensor, "send", _send),
    (torch.Tensor, "share", _share),
    (nn.Module, "send", _send_model),
    (nn.Module, "get", _get_model),
    (nn.Module, "move", _move_model),
)


def hook_torch() -> None:
    """Add ``torch.Tensor.send/share`` and ``torch.nn.Module.send/get/move``.

    Idempotent; refuses to overwrite an attribute torch (or another
    library) already defines.
    """
    for owner, name, method in _METHODS:
        current: Any = getattr(owner, name, None)
        if current is method:
            continue
        if current is not None:
            raise RuntimeError(f"{owner.__module__}.{owner.__qualname__}.{name} already exists; refusing to overwrite it")
        setattr(owner, name, method)
