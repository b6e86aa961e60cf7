"""The value grammar of command arguments, and the pointer reference type.

A wire value is one of: ``None``, ``bool``, ``int`` (signed or unsigned
64-bit), ``float``, ``str``, ``bytes``, a list of values, a map from strings
to values, a tensor, a :class:`PointerRef`, a ``slice`` of integers or
``None``, ``Ellipsis``, or a ``torch.dtype`` from the allowlist.  Tuples
encode as lists.  This module is pure: no I/O, nothing from ``node/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import EllipsisType
from typing import Dict, List, Union

import torch

from .ids import NodeId, ObjectId

__all__ = ["PointerRef", "Value", "EllipsisType"]

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
    torch.Tensor,
    PointerRef,
    slice,
    EllipsisType,
    torch.dtype,
]
