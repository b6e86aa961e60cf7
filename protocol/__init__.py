"""Tessera's wire protocol: messages, codec, value grammar and typed errors.

Pure and I/O-free: this package imports only the standard library, msgpack
and torch (for tensor buffer conversion).  Never asyncio, websockets, files
or ``node/``; ``tests/protocol/test_layering.py`` enforces it.
"""

from __future__ import annotations

from .codec import Frame, decode_message, encode_message, encode_message_bytes
from .errors import *  # noqa: F403 - the error family is part of the public surface
from .errors import __all__ as _error_names
from .ids import NodeId, ObjectId, RequestId
from .limits import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from .messages import *  # noqa: F403
from .messages import __all__ as _message_names
from .values import PointerRef, Value

__all__ = [
    "Frame",
    "decode_message",
    "encode_message",
    "encode_message_bytes",
    "NodeId",
    "ObjectId",
    "RequestId",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "PointerRef",
    "Value",
    *_error_names,
    *_message_names,
]
