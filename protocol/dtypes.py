"""The dtype allowlist by wire name, with item sizes, and no torch.

Validating a name (a chunk's ``dtype``, an ObjectInfo's) and sizing a
tensor from its name and shape need no tensor, so they live here where a
process that never handles tensors (the gateway) can use them without
importing torch.  :mod:`protocol.tensors` maps the same names to torch
dtypes.  Imports nothing of ours but the error family.
"""

from __future__ import annotations

from typing import Mapping

from .errors import BadTensor

__all__ = ["DTYPE_ITEMSIZES", "check_dtype_name"]

DTYPE_ITEMSIZES: Mapping[str, int] = {
    "bool": 1,
    "uint8": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
}
"""Wire name -> bytes per element (PROTOCOL.md 5.1).  Anything else is ``BAD_TENSOR``."""


def check_dtype_name(name: object) -> str:
    """``name`` if it is an allowlisted wire name, else :class:`BadTensor`."""
    if not isinstance(name, str) or name not in DTYPE_ITEMSIZES:
        shown = name[:32] if isinstance(name, str) else type(name).__name__
        raise BadTensor(f"dtype {shown!r} is not allowed", {"dtype": str(shown)})
    return name
