"""Assembling a streamed tensor from its chunks, in order, into one allocation.

Used for client uploads (``put_chunk``) and node-to-node deliveries
(``deliver``).  The tensor is allocated once, when the first chunk arrives,
after checking its declared size against the node's per-object limit and
reserving all of it in the quota of the principal it is for (so a
principal's unfinished uploads count like its stored objects); each chunk
is copied straight into place.  The reservation goes with the upload: it
becomes the stored object's (``store.put(..., reservation=upload.reservation)``)
or is released by :meth:`Upload.abandon`.  A single chunk that carries the whole
tensor is used as is (zero copy, a view of the received frame).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from protocol.errors import BadRequest, QuotaExceeded
from protocol.tensors import DTYPES

from .quota import Reservation

__all__ = ["Upload", "tensor_bytes"]


def tensor_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a contiguous tensor as a flat ``uint8`` view (no copy)."""
    return tensor.reshape(-1).view(torch.uint8)


class Upload:
    """One tensor being received chunk by chunk."""

    def __init__(
        self,
        dtype_name: str,
        shape: tuple[int, ...],
        max_bytes: int,
        reserve: Callable[[int], Reservation],
    ) -> None:
        """Check the declared size, then ``reserve(size)`` (QuotaExceeded) before anything is allocated."""
        dtype = DTYPES[dtype_name]
        self.dtype_name, self.shape = dtype_name, shape
        self.expected = math.prod(shape) * dtype.itemsize
        if self.expected > max_bytes:
            raise QuotaExceeded(
                f"an object of {self.expected} bytes exceeds this node's limit of {max_bytes}",
                {"size": self.expected, "limit": max_bytes},
            )
        self.reservation = reserve(self.expected)
        self._dtype = dtype
        self._tensor: torch.Tensor | None = None
        self.received = 0

    def abandon(self) -> None:
        """Drop the partial tensor and give its reservation back (idempotent)."""
        self._tensor = None
        self.reservation.release()

    def write(self, dtype_name: str, shape: tuple[int, ...], offset: int, data: torch.Tensor) -> None:
        """Copy the next chunk in; chunks must arrive in order and agree on dtype and shape."""
        if (dtype_name, shape) != (self.dtype_name, self.shape):
            raise BadRequest("a chunk disagrees with the first one on dtype or shape", {})
        if offset != self.received:
            raise BadRequest(
                f"chunk at byte {offset} arrived, byte {self.received} was expected",
                {"offset": offset, "expected": self.received},
            )
        if offset == 0 and data.numel() == self.expected:
            self._tensor = data.view(self._dtype).view(self.shape) if self.expected else None
        else:
            if self._tensor is None:
                self._tensor = torch.empty(self.shape, dtype=self._dtype)
            tensor_bytes(self._tensor)[offset : offset + data.numel()].copy_(data)
        self.received += data.numel()

    def complete(self) -> torch.Tensor:
        """The assembled tensor; BadRequest if bytes are missing."""
        if self.received != self.expected:
            raise BadRequest(
                f"upload ended after {self.received} of {self.expected} bytes",
                {"received": self.received, "expected": self.expected},
            )
        if self._tensor is None:
            return torch.empty(self.shape, dtype=self._dtype)
        return self._tensor
