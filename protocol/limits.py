"""Protocol limits, as named constants with their documented values.

Every value here is also stated in ``PROTOCOL.md``.  Nodes may lower the
message size limit by configuration; the structural limits are fixed so that
any conforming peer can rely on them.
"""

from __future__ import annotations

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_NESTING_DEPTH",
    "MAX_CONTAINER_LEN",
    "MAX_STRING_BYTES",
    "MAX_TENSOR_DIMS",
    "MAX_RESULTS",
    "MAX_DELETE_BATCH",
    "PAYLOAD_ALIGNMENT",
]

PROTOCOL_VERSION = 1
"""Wire protocol version, sent in the handshake; peers must match exactly."""

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Largest frame a node accepts unless configured otherwise (256 MiB)."""

MAX_NESTING_DEPTH = 16
"""Deepest nesting of arrays and maps inside a message, the envelope included."""

MAX_CONTAINER_LEN = 1_000_000
"""Most elements in one msgpack array or map."""

MAX_STRING_BYTES = 65_536
"""Longest msgpack string (op names, dataset names, messages)."""

MAX_TENSOR_DIMS = 32
"""Most dimensions a tensor may have."""

MAX_RESULTS = 64
"""Most result ids one command may name."""

MAX_DELETE_BATCH = 100_000
"""Most object ids one delete request may name."""

PAYLOAD_ALIGNMENT = 8
"""Tensor payloads start at offsets that are multiples of this, from the frame start."""
