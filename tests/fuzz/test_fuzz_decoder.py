"""Property tests: ``decode_message`` turns any input into a message or a RemoteProtocolError, and round-trips.

The fast slice of the fuzzing (``benchmarks.fuzz`` is the long run): every
input must either decode to a message that re-encodes and decodes to an
equal message, or raise a :class:`~protocol.errors.RemoteProtocolError`; any other
exception fails the test.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from protocol.codec import decode_message
from protocol.errors import MessageTooLarge, RemoteProtocolError, TensorRefused
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from protocol.tensors import DTYPES
from tests.fuzz.corpus import (
    INTERESTING, KINDS, MUTATIONS, assemble, field_names, mutate, seed_frames, seed_messages,
)
from tests.fuzz.oracle import check_decoder, check_reportable, same

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # keep hypothesis' caches out of the checkout
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tessera-hypothesis")

SEEDS = seed_frames()
SEED_IDS = [message.KIND.value for message in seed_messages()]
NAMES = field_names()


def _body(frame: bytes) -> dict[str, Any]:
    (size,) = struct.unpack_from("<I", frame)
    return msgpack.unpackb(frame[4 : 4 + size], ext_hook=msgpack.ExtType, raw=False)  # type: ignore[no-any-return]


def _region(frame: bytes) -> bytes:
    (size,) = struct.unpack_from("<I", frame)
    return frame[(4 + size + 7) // 8 * 8 :]


TENSOR_SEEDS = [f for f in SEEDS if any(getattr(v, "code", 0) == 1 for v in _body(f).values())]
MAP_SEEDS = [(f, k) for f in SEEDS for k in ("details", "kwargs", "credentials") if isinstance(_body(f).get(k), dict)]


def fast(examples: int) -> settings:
    """Hypothesis settings for the fast slice: derandomized, no database, no deadline."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


MAX_BYTES = st.sampled_from([DEFAULT_MAX_MESSAGE_BYTES, 4096, 64, 4])
EDGE_INTS = [v for v in INTERESTING if type(v) is int]
INTS = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(EDGE_INTS) | st.integers(-4, 300)
TEXT = st.text(max_size=24) | st.sampled_from(["", "fuzz", "float32", "x" * 129, "add"])
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.floats(width=32)


def _ext(code: int, data: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(data, use_bin_type=True))


def exts(region: int) -> st.SearchStrategy[msgpack.ExtType]:
    """Ext values 1-5, mostly well formed against a region of ``region`` bytes, plus junk."""
    offsets = st.integers(0, region // 8).map(lambda n: 8 * n) | INTS
    sizes = st.integers(0, region) | INTS
    shapes: st.SearchStrategy[Any] = st.lists(st.integers(0, 17) | INTS, max_size=4) | st.just([]) | INTS
    dtypes = st.sampled_from(list(DTYPES)) | TEXT
    tensor = st.tuples(dtypes, shapes, offsets, sizes).map(lambda t: _ext(1, list(t)))
    pointer = st.tuples(st.just("fuzz") | TEXT, INTS).map(lambda t: _ext(2, list(t)))
    items = st.none() | INTS | FLOATS | TEXT | st.booleans()
    slicer = st.lists(items, min_size=2, max_size=4).map(lambda t: _ext(3, t))
    ellipsis = st.binary(max_size=2).map(lambda d: msgpack.ExtType(4, d))
    dtype = (st.sampled_from(list(DTYPES) + ["complex64", "qint8"]).map(str.encode) | st.binary(max_size=9))
    junk = st.tuples(st.integers(0, 127), st.binary(max_size=16)).map(lambda t: msgpack.ExtType(*t))
    return tensor | pointer | slicer | ellipsis | dtype.map(lambda d: msgpack.ExtType(5, d)) | junk


def _nest(depth: int, leaf: Any, as_map: bool) -> Any:
    for _ in range(depth):
        leaf = {"d": leaf} if as_map else [leaf]
    return leaf


def values(region: int) -> st.SearchStrategy[Any]:
    """Random wire values: scalars, huge ints, strings, bins, exts, deep and wide containers."""
    leaves = st.none() | st.booleans() | INTS | FLOATS | TEXT | st.binary(max_size=40) | exts(region)
    nested = st.recursive(
        leaves, lambda children: st.lists(children, max_size=6) | st.dictionaries(TEXT, children, max_size=5),
        max_leaves=25,
    )
    deep = st.builds(_nest, st.integers(10, 40), leaves, st.booleans())
    wide = st.integers(0, 3000).map(lambda n: [0] * n) | st.integers(0, 500).map(lambda n: {str(i): i for i in range(n)})
    return nested | deep | wide


@st.composite
def structured_frames(draw: st.DrawFn) -> bytes:
    """A length-correct frame around a random msgpack map with (mostly valid) envelope keys."""
    region = draw(st.binary(max_size=64).map(lambda b: b + bytes(-len(b) % 8)) | st.binary(max_size=20))
    value = values(len(region))
    body: dict[Any, Any] = {}
    for key, good in (("v", st.just(PROTOCOL_VERSION)), ("kind", st.sampled_from(KINDS)), ("id", st.integers(0, 2**64 - 1))):
        choice = draw(st.sampled_from(["good"] * 6 + ["random", "missing"]))
        if choice != "missing":
            body[key] = draw(good if choice == "good" else value)
    body.update(draw(st.dictionaries(st.sampled_from(NAMES) | TEXT, value, max_size=6)))
    return assemble(msgpack.packb(body, use_bin_type=True), region)


def _retensor(frame: bytes, item: int, new: Any) -> bytes:
    """Replace item ``item`` (dtype, shape, offset, nbytes) of the frame's first tensor header."""
    body = _body(frame)
    key = next(k for k, v in body.items() if getattr(v, "code", 0) == 1)
    header = msgpack.unpackb(body[key].data, raw=False)
    header[item] = new
    body[key] = _ext(1, header)
    return assemble(msgpack.packb(body, use_bin_type=True), _region(frame))


@pytest.mark.parametrize("frame", SEEDS, ids=SEED_IDS)
def test_seed_round_trips(frame: bytes) -> None:
    """Every seed decodes and round-trips, so the oracle itself is sound."""
    message = check_decoder(frame)
    assert not isinstance(message, Exception), message
    assert same(message, decode_message(frame))


@fast(400)
@given(st.binary(max_size=300), MAX_BYTES)
def test_arbitrary_bytes(data: bytes, max_bytes: int) -> None:
    """Arbitrary bytes decode to a message or raise RemoteProtocolError."""
    check_decoder(data, max_bytes)


@fast(400)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_arbitrary_body_behind_a_valid_header(body: bytes, region: bytes) -> None:
    """Arbitrary body bytes behind a correct length header decode or raise RemoteProtocolError."""
    check_decoder(assemble(body, region))


@fast(600)
@given(structured_frames(), MAX_BYTES)
def test_structured_frames(frame: bytes, max_bytes: int) -> None:
    """Random msgpack maps with envelope keys, exts 1-5, deep and wide values decode or raise RemoteProtocolError."""
    check_decoder(frame, max_bytes)


@fast(30)
@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
@given(ops=st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_seeds(seed: bytes, ops: list[tuple[str, int, int]]) -> None:
    """Bit flips, truncations, insertions, header and field tweaks of every kind decode or raise RemoteProtocolError."""
    frame = seed
    for op, a, b in ops:
        frame = mutate(frame, op, a, b)
    check_decoder(frame)


@fast(300)
@given(st.sampled_from(TENSOR_SEEDS), st.integers(0, 3), INTS | st.lists(INTS, max_size=3) | TEXT | st.none(), MAX_BYTES)
def test_tensor_header_tweaks(seed: bytes, item: int, new: Any, max_bytes: int) -> None:
    """A tensor header with any dtype, shape, offset or nbytes decodes or raises RemoteProtocolError."""
    check_decoder(_retensor(seed, item, new), max_bytes)


@fast(200)
@given(st.sampled_from(SEEDS), st.integers(-64, 64) | st.sampled_from([0, 2**32 - 1, 2**31]))
def test_header_length_tweaks(seed: bytes, delta: int) -> None:
    """A body length header off by any amount decodes or raises RemoteProtocolError."""
    (size,) = struct.unpack_from("<I", seed)
    check_decoder(struct.pack("<I", (size + delta) % 2**32) + seed[4:])


@fast(100)
@given(st.sampled_from(MAP_SEEDS), st.floats(allow_nan=True, allow_infinity=True) | st.floats(width=32))
def test_floats_in_value_maps_round_trip(seed: tuple[bytes, str], number: float) -> None:
    """Floats (NaN and infinities included) in details, kwargs and credentials survive a round trip."""
    frame, key = seed
    body = _body(frame)
    body[key] = {**body[key], "f": number}
    message = check_decoder(assemble(msgpack.packb(body, use_bin_type=True), _region(frame)))
    assert not isinstance(message, Exception), message


@fast(300)
@given(structured_frames() | st.tuples(st.sampled_from(SEEDS), st.sampled_from(MUTATIONS), st.integers(0, 2**20),
                                      st.integers(0, 255)).map(lambda t: mutate(*t)), MAX_BYTES)
def test_decode_errors_are_reportable(frame: bytes, max_bytes: int) -> None:
    """The error reply a node builds from a decode error encodes and decodes unchanged."""
    result = check_decoder(frame, max_bytes)
    if isinstance(result, RemoteProtocolError):
        check_reportable(result)


TOO_LARGE_2_64 = bytes.fromhex(
    "3a00000085a17601a46b696e64a3707574a2696405a96f626a6563745f696401a576616c7565"
    "c7150194a7666c6f6174363491cf20000000000000000000"
)
"""``put`` id 5 of a float64 tensor of shape [2**61] at offset 0, nbytes 0: it declares 2**64 bytes."""


def test_too_large_tensor_error_is_reportable() -> None:
    """The TOO_LARGE error for a tensor declaring 2**64 bytes can be sent back as an error reply."""
    result = check_decoder(TOO_LARGE_2_64)
    assert isinstance(result, MessageTooLarge)
    check_reportable(result)


def _plain_id(frame: bytes) -> int | None:
    """The id a plain msgpack reading of a complete body finds (None if it finds none)."""
    if len(frame) < 4:
        return None
    (size,) = struct.unpack_from("<I", frame)
    if 4 + size > len(frame):
        return None
    try:
        body = msgpack.unpackb(frame[4 : 4 + size], ext_hook=msgpack.ExtType, raw=False, strict_map_key=False)
    except Exception:
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    valid = type(request_id) is int and 0 <= request_id < 2**64
    return request_id if valid else 0


@fast(400)
@given(structured_frames() | st.tuples(st.sampled_from(SEEDS), st.sampled_from(MUTATIONS), st.integers(0, 2**20),
                                      st.integers(0, 255)).map(lambda t: mutate(*t)))
def test_errors_carry_the_id_a_plain_reading_finds(frame: bytes) -> None:
    """Whenever the body is complete msgpack, a decode error carries exactly the id it holds (PROTOCOL.md 4)."""
    result = check_decoder(frame)
    expected = _plain_id(frame)
    if isinstance(result, RemoteProtocolError) and expected is not None:
        assert result.request_id == expected


@fast(300)
@given(structured_frames())
def test_the_no_tensor_decoder_builds_no_tensor(frame: bytes) -> None:
    """With tensors=False any frame decodes to a message without tensors or raises RemoteProtocolError."""
    try:
        message = decode_message(frame, tensors=False)
    except TensorRefused as exc:
        assert exc.code is not None and exc.code.value == "BAD_REQUEST"
        return
    except RemoteProtocolError:
        return
    assert not _holds_torch(message), message


def _holds_torch(value: Any) -> bool:
    if isinstance(value, (torch.Tensor, torch.dtype)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_torch(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_torch(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds_torch(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False
