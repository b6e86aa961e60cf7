"""Tessera's wire protocol: messages, codec, value grammar and typed errors.

Pure and I/O-free: this package imports only the standard library and
msgpack, plus torch in :mod:`protocol.tensors` alone, which the codec loads
on the first tensor it meets (a gateway never does).  Never asyncio,
websockets, files or ``node/``; ``tests/protocol/test_layering.py`` enforces
it.  ``PROTOCOL.md`` next to this file is the specification.

This package re-exports the few names most callers need: the codec's entry
points and :class:`Frame`, the id types, the version and the default size
limit, the message and value unions, and the roots of the error family.
Everything else is imported from its module, which owns it:

Public modules
    ``codec``        encode a message to a :class:`Frame`, decode a frame
    ``messages``     one frozen dataclass per message kind; ``Message``, ``Request``, ``Reply``
    ``errors``       the error family and its stable wire codes
    ``ids``          ``NodeId``, ``ObjectId``, ``RequestId``
    ``limits``       the protocol version and the structural limits
    ``values``       the value grammar of arguments, ``PointerRef``
    ``records``      what the gateway knows about a node
    ``ops``          the op allowlist of ``command``
    ``tensors``      the torch dtype allowlist and zero-copy payloads (imports torch)
    ``dtypes``       the dtype allowlist by wire name, without torch
    ``discovery``, ``transfers``, ``streams``, ``mpc``, ``secagg``, ``federated``
                     the message kinds of each feature and their constants

Internal modules (imported by the above; stable only through them)
    ``kinds``        the kind enum, the request mixin, ``error`` and ``ack``
    ``fields``, ``record_fields``, ``mpc_fields``, ``secagg_fields``,
    ``federated_fields``
                     each kind's wire fields: builders and validators
    ``validate``     primitive validators of decoded msgpack
    ``salvage``      the request id of a frame that fails to decode
"""

from __future__ import annotations

from .codec import Frame, decode_message, encode_message, encode_message_bytes
from .errors import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TesseraError,
)
from .ids import NodeId, ObjectId, RequestId
from .limits import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from .messages import Message, MessageKind, Reply, Request
from .values import PointerRef, Value

__all__ = [
    "Frame",
    "decode_message",
    "encode_message",
    "encode_message_bytes",
    "ErrorCode",
    "TesseraError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "NodeId",
    "ObjectId",
    "RequestId",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "Message",
    "MessageKind",
    "Request",
    "Reply",
    "PointerRef",
    "Value",
]
