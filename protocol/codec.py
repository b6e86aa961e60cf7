"""Encode messages to frames and decode frames to validated messages.

Frame layout (all integers little-endian unless msgpack says otherwise)::

    u32 H | msgpack body (H bytes) | zero padding to 8 | tensor payloads

The body is one msgpack map: ``v`` (protocol version), ``kind``, ``id`` and
the kind's fields.  A tensor inside the body is an ext value whose data is
``[dtype, shape, offset, nbytes]``; its raw bytes live in the payload region,
``offset`` bytes after the region's start, each payload 8-aligned.  Keeping
payloads out of msgpack is what makes both directions zero-copy: msgpack
would copy ext and bin data into new ``bytes`` objects, while here the
encoder hands the tensor's own memory to the transport and the decoder wraps
the received frame with ``torch.frombuffer``.

The decoder's contract: any byte string either becomes a valid
:data:`~protocol.messages.Message` or raises :class:`~protocol.errors.ProtocolError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import msgpack
import torch

from . import fields as f
from . import validate as v
from .errors import (
    BadTensor,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnknownKind,
    VersionMismatch,
)
from .ids import RequestId
from .limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONTAINER_LEN,
    MAX_STRING_BYTES,
    PAYLOAD_ALIGNMENT,
    PROTOCOL_VERSION,
)
from .messages import Message, MessageKind
from .tensors import DTYPE_NAMES, dtype_from_name, tensor_from_payload, tensor_payload
from .values import PointerRef

__all__ = [
    "Frame",
    "ExtCode",
    "encode_message",
    "encode_message_bytes",
    "decode_message",
]

Buffer = Union[bytes, bytearray, memoryview]

_HEADER = struct.Struct("<I")


class ExtCode:
    """msgpack ext type codes of the value grammar."""

    TENSOR = 1
    POINTER = 2
    SLICE = 3
    ELLIPSIS = 4
    DTYPE = 5


@dataclass(frozen=True, slots=True)
class Frame:
    """An encoded message as a sequence of byte parts, ready for a transport.

    ``parts`` may reference tensor memory directly; ``keepalive`` holds the
    tensors that own it, so keep the frame alive until it is sent.
    """

    parts: tuple[Buffer, ...]
    nbytes: int
    keepalive: tuple[torch.Tensor, ...] = ()

    def to_bytes(self) -> bytes:
        """The frame as one ``bytes`` (copies; fine for small messages)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], bytes):
            return self.parts[0]
        return b"".join(self.parts)


def _align(n: int) -> int:
    return (n + PAYLOAD_ALIGNMENT - 1) // PAYLOAD_ALIGNMENT * PAYLOAD_ALIGNMENT


class _Encoder:
    """Collects tensor payloads while msgpack packs the body."""

    def __init__(self) -> None:
        self.payloads: list[memoryview] = []
        self.owners: list[torch.Tensor] = []
        self.region = 0

    def default(self, obj: object) -> object:
        if isinstance(obj, torch.Tensor):
            name, shape, view, owner = tensor_payload(obj)
            offset = self.region
            self.payloads.append(view)
            self.owners.append(owner)
            self.region = _align(offset + view.nbytes)
            return msgpack.ExtType(ExtCode.TENSOR, _pack([name, shape, offset, view.nbytes]))
        if isinstance(obj, PointerRef):
            return msgpack.ExtType(ExtCode.POINTER, _pack([obj.node, obj.object_id]))
        if isinstance(obj, slice):
            return msgpack.ExtType(ExtCode.SLICE, _pack([obj.start, obj.stop, obj.step]))
        if obj is Ellipsis:
            return msgpack.ExtType(ExtCode.ELLIPSIS, b"")
        if isinstance(obj, torch.dtype):
            dtype_name = DTYPE_NAMES.get(obj)
            if dtype_name is None:
                raise MalformedMessage(f"dtype {obj} cannot be sent", {"dtype": str(obj)})
            return msgpack.ExtType(ExtCode.DTYPE, dtype_name.encode())
        raise MalformedMessage(
            f"a value of type {type(obj).__name__} cannot be sent",
            {"type": type(obj).__name__},
        )


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def encode_message(message: Message) -> Frame:
    """Encode ``message`` into a :class:`Frame` without copying tensor data."""
    body = f.body_of(message)
    body["v"] = PROTOCOL_VERSION
    encoder = _Encoder()
    try:
        packed = msgpack.packb(body, default=encoder.default, use_bin_type=True)
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError, RuntimeError, NotImplementedError) as exc:
        raise MalformedMessage(f"cannot encode {message.KIND.value}: {exc}", {}) from exc
    head = _HEADER.pack(len(packed)) + packed
    if not encoder.payloads:
        return Frame((head,), len(head))
    start = _align(len(head))
    parts: list[Buffer] = [head + bytes(start - len(head))]
    position = 0
    for view in encoder.payloads:
        padding = _align(position) - position
        if padding:
            parts.append(bytes(padding))
        parts.append(view)
        position += padding + view.nbytes
    return Frame(tuple(parts), start + position, tuple(encoder.owners))


def encode_message_bytes(message: Message) -> bytes:
    """Encode ``message`` into one ``bytes`` object."""
    return encode_message(message).to_bytes()


def decode_message(data: Buffer, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate one frame.  Raises only :class:`ProtocolError`.

    The returned message's tensors share memory with ``data``.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    if view.nbytes > max_bytes:
        raise MessageTooLarge.for_size("message", view.nbytes, max_bytes)
    if view.nbytes < _HEADER.size:
        raise MalformedMessage("frame shorter than its 4-byte header", {"size": view.nbytes})
    (body_len,) = _HEADER.unpack_from(view, 0)
    if body_len > view.nbytes - _HEADER.size:
        raise MalformedMessage(
            "body length in the header exceeds the frame",
            {"body": body_len, "frame": view.nbytes},
        )
    region_start = _align(_HEADER.size + body_len)
    region = view[region_start:] if region_start <= view.nbytes else view[0:0]
    raw = view[_HEADER.size : _HEADER.size + body_len]
    try:
        body = _unpack_body(raw, region, max_bytes)
    except ProtocolError as exc:
        raise _with_request(exc, RequestId(_salvage_request_id(raw))) from None
    return _message_from_body(body)


def _unpack_body(raw: memoryview, region: memoryview, max_bytes: int) -> dict[str, Any]:
    hook = _ext_hook(region, max_bytes)
    try:
        body = msgpack.unpackb(
            raw,
            ext_hook=hook,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_STRING_BYTES,
            max_bin_len=max_bytes,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
            max_ext_len=4096,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types; the contract is ProtocolError
        raise MalformedMessage(f"body is not valid msgpack ({type(exc).__name__})", {}) from None
    if not isinstance(body, dict):
        raise MalformedMessage("message body must be a map", {})
    v.check_values(body)
    return body


def _salvage_request_id(raw: memoryview) -> int:
    """Best-effort request id of a body whose values failed validation (else 0).

    Lets the receiver correlate its error reply even when, say, a tensor in
    the request was invalid.  Ext values are skipped, not built.
    """
    try:
        body = msgpack.unpackb(
            raw,
            ext_hook=lambda code, data: None,
            raw=False,
            strict_map_key=False,
            max_str_len=MAX_STRING_BYTES,
            max_bin_len=raw.nbytes,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
            max_ext_len=4096,
        )
    except Exception:
        return 0
    request_id = body.get("id") if isinstance(body, dict) else None
    if isinstance(request_id, int) and not isinstance(request_id, bool) and 0 <= request_id < 2**64:
        return request_id
    return 0


def _ext_hook(region: memoryview, max_bytes: int) -> Callable[[int, bytes], object]:
    def hook(code: int, data: bytes) -> object:
        if code == ExtCode.TENSOR:
            return _decode_tensor(data, region, max_bytes)
        if code == ExtCode.POINTER:
            node, object_id = _small_array(data, 2, "pointer")
            return PointerRef(v.node_id(node, "pointer.node"), v.object_id(object_id, "pointer.id"))
        if code == ExtCode.SLICE:
            start, stop, step = _small_array(data, 3, "slice")
            return slice(
                v.optional_int(start, "slice.start"),
                v.optional_int(stop, "slice.stop"),
                v.optional_int(step, "slice.step"),
            )
        if code == ExtCode.ELLIPSIS:
            if data:
                raise MalformedMessage("ellipsis ext must be empty", {})
            return Ellipsis
        if code == ExtCode.DTYPE:
            try:
                name = data.decode("ascii")
            except UnicodeDecodeError:
                raise MalformedMessage("dtype ext must be an ASCII name", {}) from None
            return dtype_from_name(name)
        raise MalformedMessage(f"unknown ext type {code}", {"ext": code})

    return hook


def _small_array(data: bytes, length: int, what: str) -> Sequence[Any]:
    try:
        items = msgpack.unpackb(data, raw=False, use_list=True, max_ext_len=0, max_str_len=1024)
    except Exception:
        raise MalformedMessage(f"{what} ext is not a msgpack array", {}) from None
    if not isinstance(items, list) or len(items) != length:
        raise MalformedMessage(f"{what} ext must be an array of {length}", {})
    return items


def _decode_tensor(data: bytes, region: memoryview, max_bytes: int) -> torch.Tensor:
    dtype, shape, offset, nbytes = _small_array(data, 4, "tensor")
    offset = v.uint(offset, "tensor.offset")
    nbytes = v.uint(nbytes, "tensor.nbytes")
    if offset % PAYLOAD_ALIGNMENT:
        raise BadTensor("tensor payload offset must be 8-aligned", {"offset": offset})
    if offset + nbytes > region.nbytes:
        dtype_from_name(dtype)  # report a bad dtype before a bad length
        raise BadTensor(
            "tensor payload lies outside the frame",
            {"offset": offset, "nbytes": nbytes, "region": region.nbytes},
        )
    return tensor_from_payload(dtype, shape, region[offset : offset + nbytes], max_bytes)


def _message_from_body(body: dict[str, Any]) -> Message:
    kind = body.get("kind")
    request_id = body.get("id")
    if not isinstance(kind, str):
        raise MalformedMessage("message has no string 'kind'", {})
    rid = RequestId(v.uint(request_id, "id"))
    version = body.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _with_request(MalformedMessage("message has no integer 'v'", {}), rid)
    try:
        known = MessageKind(kind)
    except ValueError:
        raise _with_request(UnknownKind.for_kind(kind), rid) from None
    if version != PROTOCOL_VERSION:
        raise _with_request(VersionMismatch.for_versions(PROTOCOL_VERSION, version), rid)
    try:
        return f.message_from(known, rid, body)
    except ProtocolError as exc:
        raise _with_request(exc, rid) from None


def _with_request(exc: ProtocolError, request_id: RequestId) -> ProtocolError:
    """Attach the request id so the receiver can correlate its error reply."""
    exc.request_id = request_id
    return exc
