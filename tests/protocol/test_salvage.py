"""Which errors carry the frame's id: exactly the rule of PROTOCOL.md section 4.

Bodies are written by hand (msgpack bytes), so the cases reach what an
encoder would never produce: duplicate keys, non-shortest ints, truncation.
"""

from __future__ import annotations

import struct

import msgpack
import pytest

from protocol.codec import ExtCode, decode_message
from protocol.errors import RemoteProtocolError
from protocol.limits import MAX_CONTAINER_LEN, MAX_NESTING_DEPTH, MAX_STRING_BYTES
from protocol.salvage import salvage_request_id

ID = b"\xa2id"
"""The key ``id`` as a fixstr."""

SYNC = b"\xa1v\x01\xa4kind\xa4sync"
"""Two entries: ``v`` 1 and ``kind`` "sync"."""


BAD = b"\xa1x" + b"\xd4\x09\x00"
"""One entry whose value is an unknown ext (type 9): it makes any body fail to decode."""


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def error_id(body: bytes, **options: bool) -> int:
    """The request id of the error that decoding the frame of ``body`` raises."""
    with pytest.raises(RemoteProtocolError) as caught:
        decode_message(frame(body), **options)
    assert salvage_request_id(memoryview(body)) in (0, caught.value.request_id)
    return caught.value.request_id


def entry(key: bytes, value: object) -> bytes:
    return key + msgpack.packb(value, use_bin_type=True)


def ext(code: int, data: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, data))


def deep(levels: int) -> bytes:
    return b"\x91" * levels + b"\x01"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x84" + SYNC + entry(ID, 9) + entry(b"\xa1s", "x" * (MAX_STRING_BYTES + 1)), "long string after"),
        (b"\x84" + entry(b"\xa1s", "x" * (MAX_STRING_BYTES + 1)) + SYNC + entry(ID, 9), "long string before"),
        (b"\x84" + SYNC + entry(b"\xa1a", list(range(MAX_CONTAINER_LEN + 1))) + entry(ID, 9), "long array"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + ext(9, b"?"), "unknown ext"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + ext(ExtCode.POINTER, b"\x01"), "bad pointer ext"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + b"\xd6\xff" + b"\x00" * 4, "timestamp ext"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + deep(MAX_NESTING_DEPTH + 1), "nesting beyond 16"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\x05" + b"\x01", "int key"),
        (b"\x83" + SYNC + ID + b"\x09" + b"\xc0", "trailing bytes"),
        (b"\x84" + SYNC + ID + b"\xcf" + (9).to_bytes(8, "big") + BAD, "id as uint 64"),
        (b"\x84" + SYNC + b"\xd9\x02id" + b"\x09" + BAD, "key as str 8"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + b"\xc1", "reserved byte after the id"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + b"\xdb\xff\xff\xff\xff", "truncated after the id"),
        (b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + deep(2000), "deep nesting after the id"),
        (b"\x85" + SYNC + ID + b"\x05" + ID + b"\x09" + BAD, "last of two ids"),
        (b"\x82" + ID + b"\x09" + b"\xa1v\x01", "no kind"),
    ],
    ids=lambda case: case if isinstance(case, str) else "",
)
def test_the_id_is_echoed_whenever_it_can_be_read(body: bytes, why: str) -> None:
    """Limits, ext values, nesting, keys, duplicates and what follows the id entry do not hide it."""
    assert error_id(body) == 9, why


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x83" + SYNC + b"\xa1x\xc1" + ID + b"\x09", "reserved byte before the id"),
        (b"\x83" + SYNC + b"\xa1x" + b"\xdb\xff\xff\xff\xff", "truncated before the id"),
        (b"\x84" + SYNC + b"\xa1x" + deep(2000) + ID + b"\x09", "nested over 1024 before the id"),
        (b"\x93\x01\x02\x03", "body not a map"),
        (b"\x82" + SYNC, "no id"),
        (b"\x83" + SYNC + entry(ID, True), "id a bool"),
        (b"\x83" + SYNC + entry(ID, -1), "id negative"),
        (b"\x83" + SYNC + entry(ID, 9.0), "id a float"),
        (b"\x83" + SYNC + entry(ID, "9"), "id a str"),
        (b"\x83" + SYNC + b"\xc4\x02id\x09", "key a bin"),
        (b"\x84" + SYNC + ID + b"\x09" + ID + b"\xc3", "last id not an int"),
    ],
    ids=lambda case: case if isinstance(case, str) else "",
)
def test_the_id_is_zero_when_it_cannot_be_read(body: bytes, why: str) -> None:
    """Broken msgpack before the id entry, no map, no id entry, or a last id that is not a uint64."""
    assert error_id(body) == 0, why


def test_frame_level_errors_carry_zero() -> None:
    """Step 1 errors (too large, too short, header beyond the frame) read no body: id 0."""
    body = b"\x83" + SYNC + ID + b"\x09"
    for data, limit in [(frame(body), 8), (b"\x01\x00", 1 << 20), (struct.pack("<I", 99) + body, 1 << 20)]:
        with pytest.raises(RemoteProtocolError) as caught:
            decode_message(data, limit)
        assert caught.value.request_id == 0


@pytest.mark.parametrize("code", [ExtCode.TENSOR, ExtCode.DTYPE])
def test_a_refused_tensor_carries_the_id(code: int) -> None:
    """The no-tensor decoder's refusal carries the frame's id like any other decoder error."""
    assert error_id(b"\x84" + SYNC + ID + b"\x09" + b"\xa1x" + ext(code, b"float32"), tensors=False) == 9


def test_salvage_skips_huge_containers_without_building_them() -> None:
    """A map declaring 2^32-1 entries or an array of 2^32-1 items costs nothing before it breaks."""
    assert salvage_request_id(memoryview(b"\x83" + ID + b"\x07" + b"\xa1a" + b"\xdd\xff\xff\xff\xff")) == 7
    assert salvage_request_id(memoryview(b"\xdf\xff\xff\xff\xff" + ID + b"\x07")) == 7
