"""The request id of a frame that fails to decode, whenever it can be read.

An error answering a frame carries the frame's ``id`` so the sender can
correlate it; PROTOCOL.md section 4 states exactly when that is possible,
and this module is that rule.  The body's top-level map is read entry by
entry without building values: a key is read only if it is a msgpack str,
the value of an ``id`` key only if it is a msgpack int; everything else is
skipped whole (msgpack's ``skip`` builds nothing, so neither the limits of
section 13 nor a hostile length can make this allocate).  The last ``id``
entry read wins, as in a decoded map; reading stops at the end of the map or
at the first entry that is not well-formed msgpack.  Pure; imports msgpack
and the id rules only.
"""

from __future__ import annotations

import msgpack

from .ids import RequestId, is_request_id
from .kinds import NO_REQUEST

__all__ = ["salvage_request_id"]

_STR_HEADERS = frozenset({*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB})
"""First bytes of a msgpack str: fixstr, str 8, str 16, str 32."""

_INT_HEADERS = frozenset({*range(0x00, 0x80), *range(0xCC, 0xD4), *range(0xE0, 0x100)})
"""First bytes of a msgpack int: positive fixint, uint 8..64, int 8..64, negative fixint."""

_ID_KEY = b"id"


def salvage_request_id(body: memoryview) -> RequestId:
    """The ``id`` of a msgpack body that failed to decode, or 0 if it cannot be read."""
    unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max(body.nbytes, 1))
    unpacker.feed(body)
    found = NO_REQUEST
    try:
        for _ in range(unpacker.read_map_header()):
            if not _read_id_key(unpacker, body):
                unpacker.skip()  # the value of another key
                continue
            value: object = None
            if _next_header(unpacker, body) in _INT_HEADERS:
                value = unpacker.unpack()
            else:
                unpacker.skip()
            found = RequestId(value) if is_request_id(value) else NO_REQUEST
    except Exception:  # msgpack's own errors (truncation, reserved bytes, depth): stop here
        pass
    return found


def _read_id_key(unpacker: msgpack.Unpacker, body: memoryview) -> bool:
    """Consume the next key; whether it is the str ``id`` (a key of any other type is skipped)."""
    if _next_header(unpacker, body) not in _STR_HEADERS:
        unpacker.skip()
        return False
    return bool(unpacker.unpack() == _ID_KEY)


def _next_header(unpacker: msgpack.Unpacker, body: memoryview) -> int:
    """The first byte of the next value; -1 at the end of the body."""
    position = unpacker.tell()
    return body[position] if position < body.nbytes else -1
