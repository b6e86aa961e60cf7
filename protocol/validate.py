"""Primitive validators for decoded msgpack: loose values in, typed values out.

Every validator raises :class:`~protocol.errors.MalformedMessage` naming the
offending field.  Used by the codec and by the per-kind field tables.
Torch-free: tensors are recognised without importing torch
(:func:`~protocol.values.is_tensor`), and :mod:`protocol.tensors` is loaded
only to name the dtype of a tensor that exists.
"""

from __future__ import annotations

import enum
import math
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from .errors import MalformedMessage
from .ids import MAX_OBJECT_ID, NodeId, ObjectId, RequestId
from .limits import MAX_NESTING_DEPTH, MAX_TENSOR_DIMS
from .values import PointerRef, is_tensor

if TYPE_CHECKING:
    import torch

    from . import tensors as _tensors
else:
    _tensors = None  # protocol.tensors once a decoded tensor's dtype is named (tensor_dtype)

__all__ = [
    "MAX_NAME_CHARS",
    "bad",
    "uint",
    "optional_int",
    "object_id",
    "node_id",
    "name",
    "text",
    "boolean",
    "tensor",
    "tensor_dtype",
    "array",
    "string_map",
    "check_values",
    "required",
    "number",
    "blob",
    "principal",
    "seconds",
    "seed",
    "shape",
    "MAX_PRINCIPAL_CHARS",
    "MAX_DIM",
    "Builder",
    "Parser",
    "choice",
]

MAX_NAME_CHARS = 128

MAX_PRINCIPAL_CHARS = 256
"""Longest principal name (``node:<128-char id>@<16 hex>`` fits)."""

MAX_DIM = 2**62 - 1
"""Largest tensor dimension a shape field may name."""

Builder = Callable[[Any], dict[str, Any]]
"""A field table's body builder: message -> wire map (without ``v``, ``kind``, ``id``)."""

Parser = Callable[[RequestId, Mapping[str, Any]], Any]
"""A field table's parser: request id and wire map -> message."""


def bad(field: str, expected: str) -> MalformedMessage:
    return MalformedMessage(f"field {field!r} must be {expected}", {"field": field})


def uint(value: object, field: str, limit: int = MAX_OBJECT_ID) -> int:
    """An unsigned integer no larger than ``limit``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise bad(field, f"an integer in [0, {limit}]")
    return value


def optional_int(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, "an integer or nil")
    return value


def object_id(value: object, field: str) -> ObjectId:
    return ObjectId(uint(value, field))


def node_id(value: object, field: str) -> NodeId:
    return NodeId(name(value, field))


def name(value: object, field: str) -> str:
    """A short non-empty string (ids, op names, roles)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        raise bad(field, f"a string of 1 to {MAX_NAME_CHARS} characters")
    return value


def principal(value: object, field: str) -> str:
    """A principal's name: a str of 1 to MAX_PRINCIPAL_CHARS characters, otherwise opaque."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PRINCIPAL_CHARS:
        raise bad(field, f"a string of 1 to {MAX_PRINCIPAL_CHARS} characters")
    return value


def text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise bad(field, "a string")
    return value


def boolean(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise bad(field, "a boolean")
    return value


def tensor(value: object, field: str) -> torch.Tensor:
    if not is_tensor(value):
        raise bad(field, "a tensor")
    return value


def tensor_dtype(value: torch.Tensor) -> str | None:
    """The wire name of a decoded tensor's dtype (None outside the allowlist).

    Loads :mod:`protocol.tensors` the first time, and so torch, which a
    tensor's existence proves is loaded already.
    """
    global _tensors
    if _tensors is None:
        import protocol.tensors as tensors  # "from . import" would read as importing the package

        _tensors = tensors
    return _tensors.dtype_name_of(value)


def array(value: object, field: str, max_len: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (max_len is not None and len(value) > max_len):
        limit = "" if max_len is None else f" of at most {max_len} items"
        raise bad(field, "an array" + limit)
    return value


def string_map(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(field, "a map with string keys")
    return value


_LEAF_TYPES = frozenset({type(None), bool, int, float, str, bytes, PointerRef, slice, type(Ellipsis)})
"""Leaves that need no torch; tensors and dtypes are checked apart (:func:`_torch_leaf`)."""


def _torch_leaf(value: object) -> bool:
    torch = sys.modules.get("torch")  # a tensor or dtype can only exist once torch is loaded
    return torch is not None and isinstance(value, (torch.Tensor, torch.dtype))


def check_values(root: object) -> None:
    """Refuse anything outside the value grammar, anywhere in the body.

    Containers nested deeper than :data:`MAX_NESTING_DEPTH`, map keys that
    are not strings, and values msgpack decodes by itself but the grammar
    does not have (its timestamp ext, -1) all raise ``MalformedMessage``.
    Iterative, so a hostile message cannot exhaust the Python stack; exact
    type checks because this runs on every message.
    """
    stack: list[tuple[object, int]] = [(root, 1)]
    push, pop = stack.append, stack.pop
    while stack:
        item, depth = pop()
        if depth > MAX_NESTING_DEPTH:
            raise MalformedMessage(
                f"nesting deeper than {MAX_NESTING_DEPTH} levels", {"limit": MAX_NESTING_DEPTH}
            )
        if type(item) is dict:
            for key in item:
                if type(key) is not str:
                    raise MalformedMessage("map keys must be strings", {})
            children: Any = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
            elif kind not in _LEAF_TYPES and not _torch_leaf(child):
                raise MalformedMessage(
                    f"a {kind.__name__} is not a wire value", {"type": kind.__name__}
                )


def required(body: Mapping[str, Any], key: str) -> Any:
    if key not in body:
        raise MalformedMessage(f"missing field {key!r}", {"field": key})
    return body[key]


def number(value: object, field: str) -> float:
    """An int or float (not a bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(field, "a number")
    return float(value)


def blob(value: object, field: str, min_len: int = 0, max_len: int = 65_536) -> bytes:
    """A msgpack bin of bounded length."""
    if not isinstance(value, bytes) or not min_len <= len(value) <= max_len:
        raise bad(field, f"a binary of {min_len} to {max_len} bytes")
    return value


def seconds(value: object, field: str, limit: float) -> float:
    """A finite number of seconds in (0, ``limit``]."""
    result = number(value, field)
    if not (math.isfinite(result) and 0 < result <= limit):
        raise bad(field, f"a number of seconds in (0, {limit:g}]")
    return result


def seed(value: object, field: str) -> bytes | None:
    """A 16- or 32-byte PRG seed, or nil."""
    if value is None:
        return None
    result = blob(value, field, 16, 32)
    if len(result) not in (16, 32):
        raise bad(field, "a binary of 16 or 32 bytes, or nil")
    return result


def shape(value: object, field: str) -> tuple[int, ...]:
    """A tensor shape: at most MAX_TENSOR_DIMS dimensions of at most MAX_DIM."""
    return tuple(uint(d, field, MAX_DIM) for d in array(value, field, MAX_TENSOR_DIMS))


_E = TypeVar("_E", bound=enum.Enum)


def choice(cls: type[_E], value: object, field: str) -> _E:
    """The member of enum ``cls`` whose value is ``value`` (a boolean is never an integer's)."""
    if isinstance(value, bool):
        raise bad(field, "one of " + ", ".join(repr(m.value) for m in cls))
    try:
        return cls(value)
    except (ValueError, TypeError):
        raise bad(field, "one of " + ", ".join(repr(m.value) for m in cls)) from None
