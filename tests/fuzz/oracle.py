"""What a fuzz input must do to the decoder: decode or raise RemoteProtocolError, and round-trip."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import RemoteProtocolError, TesseraError
from protocol.ids import RequestId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import ErrorReply, Message

__all__ = ["RoundTripMismatch", "Unreportable", "check_decoder", "check_reportable", "same"]


class RoundTripMismatch(AssertionError):
    """A decoded message that does not survive encode -> decode unchanged."""


class Unreportable(AssertionError):
    """A decode error that cannot be sent back as an ``error`` reply with its own code."""


def _raw(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def same(a: Any, b: Any) -> bool:
    """Deep equality with exact types; tensors by dtype, shape and bytes; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_raw(a), _raw(b))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, slice):
        return same(a.start, b.start) and same(a.stop, b.stop) and same(a.step, b.step)
    return bool(a == b)


def check_decoder(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message | RemoteProtocolError:
    """Decode ``data``; a decoded message must re-encode and decode to an equal message.

    Returns the message or the RemoteProtocolError; any other exception propagates
    (that is a finding), and a round-trip difference raises RoundTripMismatch.
    """
    try:
        message = decode_message(data, max_bytes)
    except RemoteProtocolError as exc:
        return exc
    encoded = encode_message_bytes(message)
    again = decode_message(encoded, max(max_bytes, len(encoded)))
    if not same(message, again):
        raise RoundTripMismatch(f"{message!r} came back as {again!r}")
    return message


def check_reportable(exc: RemoteProtocolError) -> None:
    """The error reply a node builds from ``exc`` must encode and decode unchanged."""
    reply = ErrorReply.from_exception(RequestId(exc.request_id), exc)
    try:
        again = decode_message(encode_message_bytes(reply))
    except TesseraError as failure:
        raise Unreportable(f"{exc!r} (details {exc.details}) cannot be sent: {failure}") from None
    if not same(reply, again):
        raise Unreportable(f"{reply!r} came back as {again!r}")
