"""``hook_torch()``: PySyft-style ``tensor.send(node)`` and ``tensor.share(...)``, nothing else.

PySyft 0.2 replaced most of torch's namespace; we add one method.  Pointer
ops need no hook at all: they go through ``__torch_function__``.
"""

from __future__ import annotations

from typing import Any

import torch

from .host import Handle
from .mpc.sharing import share
from .pointer import Pointer

__all__ = ["hook_torch"]


def _send(self: torch.Tensor, node: Handle) -> Pointer:
    """Send this tensor to ``node``; returns a :class:`~node.Pointer`."""
    return node.send(self)


def _share(self: torch.Tensor, *parties: Handle, **options: Any) -> Any:
    """Secret-share this tensor between ``parties`` (see :func:`node.share`)."""
    return share(self, *parties, **options)


def hook_torch() -> None:
    """Add ``torch.Tensor.send(node)`` and ``torch.Tensor.share(*parties, crypto_provider=...)``.

    Idempotent.
    """
    for name, method in (("send", _send), ("share", _share)):
        current: Any = getattr(torch.Tensor, name, None)
        if current is method:
            continue
        if current is not None:
            raise RuntimeError(f"torch.Tensor.{name} already exists; refusing to overwrite it")
        setattr(torch.Tensor, name, method)
