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
:data:`~protocol.messages.Message` or raises
:class:`~protocol.errors.RemoteProtocolError` (the peer broke the protocol).
The encoder raises :class:`~protocol.errors.LocalProtocolError` for a message
the protocol cannot carry (this side broke it).

Torch is loaded on first use: :mod:`protocol.tensors` is imported when the
encoder meets a tensor or the decoder a tensor or dtype ext, never at module
level.  ``decode_message(..., tensors=False)`` refuses those exts before
building anything (``BAD_REQUEST``), so a peer cannot make a process that
takes no tensors (the gateway) import torch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar, Union

import msgpack

from .dtypes import check_dtype_name
from .errors import (
    BadTensor,
    LocalProtocolError,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    RemoteProtocolError,
    TensorRefused,
    UnknownKind,
    VersionMismatch,
)
from .fields import body_of, message_from
from .ids import RequestId, is_request_id
from .kinds import NO_REQUEST
from .limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONTAINER_LEN,
    MAX_STRING_BYTES,
    PAYLOAD_ALIGNMENT,
    PROTOCOL_VERSION,
)
from .messages import Message, MessageKind
from .salvage import salvage_request_id
from .validate import check_values, node_id, object_id, optional_int, uint
from .values import PointerRef, is_dtype, is_tensor

if TYPE_CHECKING:
    import torch

    from . import tensors as _tensors
else:
    _tensors = None  # protocol.tensors once the first tensor or dtype value is met (_load_tensors)

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


def _load_tensors() -> None:
    """Import :mod:`protocol.tensors`, and so torch, once: on the first tensor or dtype value."""
    global _tensors
    import protocol.tensors as tensors  # "from . import" would read as importing the package

    _tensors = tensors


def _align(n: int) -> int:
    return (n + PAYLOAD_ALIGNMENT - 1) // PAYLOAD_ALIGNMENT * PAYLOAD_ALIGNMENT


class _Encoder:
    """Collects tensor payloads while msgpack packs the body."""

    def __init__(self) -> None:
        self.payloads: list[memoryview] = []
        self.owners: list[torch.Tensor] = []
        self.region = 0

    def default(self, obj: object) -> object:
        if is_tensor(obj):
            if _tensors is None:
                _load_tensors()  # a tensor exists: torch is loaded already
            name, shape, view, owner = _tensors.tensor_payload(obj)
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
        if is_dtype(obj):
            if _tensors is None:
                _load_tensors()
            dtype_name = _tensors.DTYPE_NAMES.get(obj)
            if dtype_name is None:
                raise LocalProtocolError(f"dtype {obj} cannot be sent", {"dtype": str(obj)})
            return msgpack.ExtType(ExtCode.DTYPE, dtype_name.encode())
        raise LocalProtocolError(
            f"a value of type {type(obj).__name__} cannot be sent",
            {"type": type(obj).__name__},
        )


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def encode_message(message: Message) -> Frame:
    """Encode ``message`` into a :class:`Frame` without copying tensor data.

    A message the protocol cannot carry raises :class:`LocalProtocolError`
    (carrying the message's id), and nothing is sent.
    """
    body = body_of(message)
    body["v"] = PROTOCOL_VERSION
    encoder = _Encoder()
    try:
        packed = msgpack.packb(body, default=encoder.default, use_bin_type=True)
    except LocalProtocolError as exc:
        raise _with_request(exc, message.id) from None
    except (TypeError, ValueError, OverflowError, RuntimeError, NotImplementedError) as exc:
        failed = LocalProtocolError(f"cannot encode {message.KIND.value}: {exc}", {})
        raise _with_request(failed, message.id) from exc
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


def decode_message(
    data: Buffer, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *, tensors: bool = True
) -> Message:
    """Decode and validate one frame.  Raises only :class:`RemoteProtocolError`.

    The returned message's tensors share memory with ``data``.  With
    ``tensors=False`` a tensor or dtype value is :class:`TensorRefused`
    (``BAD_REQUEST``) and torch is never loaded.  The error's ``request_id``
    is the frame's id whenever it can be read (:mod:`protocol.salvage`).
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
        body = _unpack_body(raw, region, max_bytes, tensors)
    except RemoteProtocolError as exc:
        raise _with_request(exc, salvage_request_id(raw)) from None
    return _message_from_body(body)


def _unpack_body(
    raw: memoryview, region: memoryview, max_bytes: int, tensors: bool
) -> dict[str, Any]:
    hook = _ext_hook(region, max_bytes, tensors)
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
    except RemoteProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types; the contract is RemoteProtocolError
        raise MalformedMessage(f"body is not valid msgpack ({type(exc).__name__})", {}) from None
    if not isinstance(body, dict):
        raise MalformedMessage("message body must be a map", {})
    check_values(body)
    return body


def _ext_hook(region: memoryview, max_bytes: int, tensors: bool) -> Callable[[int, bytes], object]:
    def hook(code: int, data: bytes) -> object:
        if code == ExtCode.TENSOR:
            if not tensors:
                raise TensorRefused.for_ext("tensor")
            return _decode_tensor(data, region, max_bytes)
        if code == ExtCode.POINTER:
            node, oid = _small_array(data, 2, "pointer")
            return PointerRef(node_id(node, "pointer.node"), object_id(oid, "pointer.id"))
        if code == ExtCode.SLICE:
            start, stop, step = _small_array(data, 3, "slice")
            return slice(
                optional_int(start, "slice.start"),
                optional_int(stop, "slice.stop"),
                optional_int(step, "slice.step"),
            )
        if code == ExtCode.ELLIPSIS:
            if data:
                raise MalformedMessage("ellipsis ext must be empty", {})
            return Ellipsis
        if code == ExtCode.DTYPE:
            if not tensors:
                raise TensorRefused.for_ext("dtype")
            try:
                name = data.decode("ascii")
            except UnicodeDecodeError:
                raise MalformedMessage("dtype ext must be an ASCII name", {}) from None
            if _tensors is None:
                _load_tensors()  # the first dtype value loads torch
            return _tensors.dtype_from_name(name)
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
    if _tensors is None:
        _load_tensors()  # the first tensor loads torch
    dtype, shape, offset, nbytes = _small_array(data, 4, "tensor")
    offset = uint(offset, "tensor.offset")
    nbytes = uint(nbytes, "tensor.nbytes")
    if offset % PAYLOAD_ALIGNMENT:
        raise BadTensor("tensor payload offset must be 8-aligned", {"offset": offset})
    if offset + nbytes > region.nbytes:
        check_dtype_name(dtype)  # report a bad dtype before a bad length
        raise BadTensor(
            "tensor payload lies outside the frame",
            {"offset": offset, "nbytes": nbytes, "region": region.nbytes},
        )
    return _tensors.tensor_from_payload(dtype, shape, region[offset : offset + nbytes], max_bytes)


def _message_from_body(body: dict[str, Any]) -> Message:
    readable = body.get("id")
    # Every error from here on carries the id when it is valid (PROTOCOL.md 4).
    known_id = RequestId(readable) if is_request_id(readable) else None
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise _with_request(
            MalformedMessage("message has no string 'kind'", {}), NO_REQUEST if known_id is None else known_id
        )
    rid = RequestId(uint(readable, "id")) if known_id is None else known_id  # uint raises: a bad id
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
        return message_from(known, rid, body)
    except RemoteProtocolError as exc:
        raise _with_request(exc, rid) from None


_E = TypeVar("_E", bound=ProtocolError)


def _with_request(exc: _E, request_id: int) -> _E:
    """Attach the message's id: the receiver correlates its error reply with it."""
    exc.request_id = request_id
    return exc
