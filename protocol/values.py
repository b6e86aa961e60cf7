"""The value grammar of command arguments, and the pointer reference type.

A wire value is one of: ``None``, ``bool``, ``int`` (signed or unsigned
64-bit), ``float``, ``str``, ``bytes``, a list of values, a map from strings
to values, a tensor, a :class:`PointerRef`, a ``slice`` of integers or
``None``, ``Ellipsis``, or a ``torch.dtype`` from the allowlist.  Tuples
encode as lists.

Torch-free: a tensor or a dtype can only exist in a process that imported
torch, so :func:`is_tensor` and :func:`is_dtype` look torch up in
``sys.modules`` rather than import it (a gateway never loads it).  This
module is pure: no I/O, nothing from ``node/``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Dict, List, TypeGuard, Union

from .ids import NodeId, ObjectId

if TYPE_CHECKING:
    import torch

__all__ = ["PointerRef", "Value", "EllipsisType", "is_tensor", "is_dtype"]


@dataclass(frozen=True, slots=True)
class PointerRef:
    """Names an object stored on a node: the owner node's id and the object id."""

    node: NodeId
    object_id: ObjectId

    def __repr__(self) -> str:
        return f"PointerRef({self.node}:{self.object_id:#x})"


Value = Union[
    None,
    bool,
    int,
    float,
    str,
    bytes,
    List["Value"],
    Dict[str, "Value"],
    "torch.Tensor",
    PointerRef,
    slice,
    EllipsisType,
    "torch.dtype",
]


def is_tensor(value: object) -> TypeGuard[torch.Tensor]:
    """Whether ``value`` is a ``torch.Tensor``, without importing torch."""
    torch = sys.modules.get("torch")  # loaded already if a tensor can exist
    return torch is not None and isinstance(value, torch.Tensor)


def is_dtype(value: object) -> TypeGuard[torch.dtype]:
    """Whether ``value`` is a ``torch.dtype``, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.dtype)
