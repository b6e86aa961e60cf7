"""Tensor payloads: the allowlisted torch dtypes and zero-copy conversion to and from bytes.

A tensor travels as a header (dtype name, shape) plus its raw little-endian
bytes.  Encoding hands out a ``memoryview`` of the tensor's own memory (no
copy); decoding wraps the received frame with ``torch.frombuffer`` (no copy).
Only the dtypes in :data:`DTYPES` are accepted, and the shape must account
for every payload byte.

The one module of ``protocol/`` that imports torch.  The codec loads it on
the first tensor or dtype value it meets, so a process that never handles
one (the gateway) never imports torch; nothing imports it at module level.
Must not import asyncio, websockets or anything from ``node/``.
"""

from __future__ import annotations

import ctypes
import math
import sys
import warnings
from typing import Mapping

import torch

from .dtypes import DTYPE_ITEMSIZES, check_dtype_name
from .errors import BadTensor, LocalProtocolError, MessageTooLarge
from .limits import MAX_TENSOR_DIMS

__all__ = [
    "DTYPES",
    "DTYPE_NAMES",
    "dtype_from_name",
    "dtype_name_of",
    "tensor_payload",
    "tensor_from_payload",
]

if sys.byteorder != "little":  # pragma: no cover - no big-endian CPython hosts in use
    raise ImportError("Tessera's wire format is little-endian; this host is big-endian")

DTYPES: Mapping[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_ITEMSIZES}
"""Wire name -> dtype, for the names of :data:`~protocol.dtypes.DTYPE_ITEMSIZES` (each wire name is torch's)."""


DTYPE_NAMES: Mapping[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


def dtype_from_name(name: object) -> torch.dtype:
    """The allowlisted dtype called ``name``, or ``BadTensor``."""
    return DTYPES[check_dtype_name(name)]


def dtype_name_of(tensor: torch.Tensor) -> str | None:
    """The wire name of ``tensor``'s dtype, or None outside the allowlist."""
    return DTYPE_NAMES.get(tensor.dtype)


def tensor_payload(tensor: torch.Tensor) -> tuple[str, list[int], memoryview, torch.Tensor]:
    """Describe ``tensor`` for the wire without copying its bytes.

    Returns the dtype name, the shape, a byte view of the data and the
    tensor that owns that memory; the caller must keep that tensor alive for
    as long as the view is in use.  Non-contiguous, conjugated or non-CPU
    tensors are materialised first (that one copy is unavoidable).  A
    tensor the wire cannot carry is a :class:`LocalProtocolError`.
    """
    name = DTYPE_NAMES.get(tensor.dtype)
    if name is None:
        raise LocalProtocolError(
            f"dtype {tensor.dtype} cannot be sent", {"dtype": str(tensor.dtype)}
        )
    if tensor.layout != torch.strided:
        raise LocalProtocolError(
            f"{tensor.layout} tensors cannot be sent; convert with .to_dense() first",
            {"layout": str(tensor.layout)},
        )
    if tensor.device.type == "meta":
        raise LocalProtocolError("meta tensors have no data to send", {"device": "meta"})
    owner = tensor.detach()
    if owner.device.type != "cpu":
        owner = owner.cpu()
    owner = owner.resolve_conj().resolve_neg().contiguous()
    nbytes = owner.numel() * owner.element_size()
    if nbytes == 0:
        return name, list(owner.shape), memoryview(b""), owner
    raw = (ctypes.c_char * nbytes).from_address(owner.data_ptr())
    return name, list(owner.shape), memoryview(raw).cast("B"), owner


def tensor_from_payload(
    dtype_name: object, shape: object, buffer: memoryview, max_bytes: int
) -> torch.Tensor:
    """Build a read-only-by-contract tensor over ``buffer`` without copying.

    Validates the dtype against the allowlist and that the shape's element
    count times the item size equals ``len(buffer)`` exactly, so a header
    cannot claim more memory than the frame carries.
    """
    dtype = dtype_from_name(dtype_name)
    dims = _validate_shape(shape)
    itemsize = dtype.itemsize
    expected = math.prod(dims) * itemsize
    if expected > max_bytes:
        raise MessageTooLarge.for_size("tensor", expected, max_bytes)
    if expected != buffer.nbytes:
        raise BadTensor(
            f"shape {dims} of {dtype_name} needs {expected} bytes, payload has {buffer.nbytes}",
            {"expected": expected, "actual": buffer.nbytes},
        )
    if expected == 0:
        return torch.empty(dims, dtype=dtype)
    with warnings.catch_warnings():
        # Wire tensors are never written to: the op table has no in-place ops.
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.frombuffer(buffer, dtype=dtype)
    return flat.view(dims)


def _validate_shape(shape: object) -> list[int]:
    if not isinstance(shape, (list, tuple)):
        raise BadTensor("tensor shape must be an array of integers", {})
    if len(shape) > MAX_TENSOR_DIMS:
        raise BadTensor(
            f"tensor has {len(shape)} dimensions, at most {MAX_TENSOR_DIMS} allowed",
            {"dims": len(shape), "limit": MAX_TENSOR_DIMS},
        )
    dims: list[int] = []
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise BadTensor("tensor shape must be an array of non-negative integers", {})
        dims.append(dim)
    # Strides are products of the non-zero dims; torch needs them to fit in int64
    # even for a tensor with no elements.
    if math.prod(d for d in dims if d) >= 2**62:
        raise BadTensor("tensor shape is too large", {"dims": len(dims)})
    return dims

