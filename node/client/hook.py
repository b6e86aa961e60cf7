"""``hook_torch()``: PySyft-style ``tensor.send(node)``, and nothing else.

PySyft 0.2 replaced most of torch's namespace; we add one method.  Pointer
ops need no hook at all: they go through ``__torch_function__``.
"""

from __future__ import annotations

from typing import Any

import torch

from .handle import NodeHandle
from .pointer import Pointer

__all__ = ["hook_torch"]


def _send(self: torch.Tensor, node: NodeHandle) -> Pointer:
    """Send this tensor to ``node``; returns a :class:`~node.Pointer`."""
    return node.send(self)


def hook_torch() -> None:
    """Add ``torch.Tensor.send(node)``.  Idempotent."""
    current: Any = getattr(torch.Tensor, "send", None)
    if current is _send:
        return
    if current is not None:
        raise RuntimeError("torch.Tensor.send already exists; refusing to overwrite it")
    setattr(torch.Tensor, "send", _send)
