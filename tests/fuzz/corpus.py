"""Fuzz inputs shared by the fuzz tests and ``benchmarks.fuzz``: seeds, mutations, random frames.

Everything is driven by explicit parameters or a seeded ``random.Random`` so
that every input can be reproduced; :mod:`tests.fuzz.oracle` judges them.
"""

from __future__ import annotations

import math
import random
import struct
import time
from typing import Any, Callable

import msgpack
import torch

from protocol.codec import encode_message_bytes
from protocol.kinds import MessageKind
from protocol.limits import PROTOCOL_VERSION
from protocol import messages as kinds
from protocol.messages import Message
from protocol.records import DatasetSummary, NodeRecord, NodeStatus, Role
from protocol.tensors import DTYPES
from protocol.values import PointerRef

__all__ = [
    "SEED_OBJECT", "KINDS", "MUTATIONS", "INTERESTING", "seed_messages", "seed_frames",
    "field_names", "assemble", "mutate", "random_value", "random_frame", "random_input",
]

SEED_OBJECT = 0x5EED_0000
"""Object id the seed ``put`` stores; the seed commands, reads and transfers name it."""

FINGERPRINT = "sha256:" + "ab" * 32
KINDS: tuple[str, ...] = tuple(kind.value for kind in MessageKind)
MUTATIONS: tuple[str, ...] = (
    "flip", "set", "truncate", "insert", "delete", "repeat", "header", "tensor", "field", "field",
    "kind", "drop",
)

INTERESTING: tuple[Any, ...] = (
    0, 1, -1, 7, 8, 9, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
    2**62, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -129, None, True, False, 0.5, -0.0,
    math.inf, math.nan, "", "x" * 129, "d" * 2049, "float32", "bogus", "\u2603", b"", b"\x00" * 16,
    [], {}, [0] * 40, [[]] * 3, {"k": []}, [2**30], [2**62, 2**62], [-1],
    msgpack.ExtType(1, b""), msgpack.ExtType(2, msgpack.packb(["fuzz", 1])),
    msgpack.ExtType(3, msgpack.packb([None, None, 0])), msgpack.ExtType(4, b""),
    msgpack.ExtType(5, b"complex64"), msgpack.ExtType(6, b"?"), msgpack.ExtType(1, b"\x94"),
    msgpack.Timestamp(0, 0),
)
"""Values the ``field`` and ``tensor`` mutations substitute: edges of every grammar rule."""

_HEADER = struct.Struct("<I")


def seed_messages(
    node_id: str = "fuzz",
    url: str = "wss://127.0.0.1:9",
    fingerprint: str = FINGERPRINT,
    certificate: bytes = b"\x30\x82\x01\x0a" + bytes(64),
) -> list[Message]:
    """One or more valid messages of every kind; commands and reads name :data:`SEED_OBJECT`."""
    m: Any = kinds  # seeds use plain ints and strs where the dataclasses want NewTypes
    me = PointerRef(node_id, SEED_OBJECT)  # type: ignore[arg-type]
    info = m.ObjectInfo(SEED_OBJECT, "float32", (4,))
    ticket = bytes(range(32))
    dataset = DatasetSummary("d", ("#x",), "rows", (3, 2), 3)
    record = NodeRecord(node_id, url, fingerprint, (Role.COMPUTE,), ("#fuzz",), (dataset,))  # type: ignore[arg-type]
    proof = {"scheme": "node", "node_id": node_id, "certificate": certificate,
             "timestamp": int(time.time()), "nonce": bytes(16), "signature": bytes(70)}
    o = SEED_OBJECT
    messages: list[Any] = [
        m.HelloRequest(1, PROTOCOL_VERSION, "fuzzer", ("client",), {"scheme": "anonymous", "secret": b"f" * 32}),
        m.HelloRequest(2, PROTOCOL_VERSION, "peer", ("node",), proof),
        m.HelloReply(3, node_id, "anon-0123456789abcdef", ("compute",), 2**28),
        m.PutRequest(4, o, torch.arange(4, dtype=torch.float32)),
        m.PutRequest(5, o + 1, torch.tensor([[1, 2], [3, 4]], dtype=torch.int64)),
        m.GetRequest(6, o, False, 0),
        m.GetRequest(7, o + 1, False, 8),
        m.GetReply(8, torch.ones(3, dtype=torch.bfloat16)),
        m.DeleteRequest(9, (o + 2, o + 3)),
        m.CommandRequest(10, "add", me, (me,), {}, (o + 2,)),
        m.CommandRequest(11, "getitem", me, ([slice(0, 2, None), Ellipsis],), {}, (o + 3,)),
        m.CommandRequest(12, "to", me, (torch.float64,), {}, (o + 4,)),
        m.CommandRequest(13, "sum", None, (me,), {"dim": 0, "keepdim": True}, (o + 5,)),
        m.CommandRequest(14, "max", me, (), {"dim": 0}, (o + 6, o + 7)),
        m.CommandRequest(15, "mul", None, (me, torch.full((4,), 2.0)), {}, (o + 8,)),
        m.SyncRequest(16), m.SyncReply(17), m.ListRequest(18), m.ListReply(19, (info,)),
        m.DescribeRequest(20, (o, o + 1)), m.DescribeReply(21, (info,)),
        m.ErrorReply(22, "BAD_MESSAGE", "nope", {"field": "x", "n": -1, "f": 0.5, "b": True, "z": None}),
        m.AckReply(23), m.RegisterRequest(24, record), m.RegisterReply(25, 2.5),
        m.HeartbeatRequest(26), m.DeregisterRequest(27), m.NodesRequest(28, "#fuzz"),
        m.NodesReply(29, (NodeStatus(record, 1.7e9, True),)),
        m.ExpectRequest(30, o + 9, node_id, fingerprint, ticket),
        m.TransferRequest(31, o, node_id, url, fingerprint, o + 9, ticket, False),
        m.DeliverRequest(32, o + 9, ticket, "float32", (4,), 0, torch.zeros(16, dtype=torch.uint8), True),
        m.PutChunkRequest(33, o + 10, "float32", (4,), 0, torch.zeros(8, dtype=torch.uint8), False),
        m.PutChunkRequest(34, o + 10, "float32", (4,), 8, torch.ones(8, dtype=torch.uint8), True),
        m.ReadRequest(35, o, 4, 8), m.ReadReply(36, torch.arange(8, dtype=torch.uint8)),
    ]
    return messages


def seed_frames(**options: Any) -> list[bytes]:
    """The encoded :func:`seed_messages`."""
    return [encode_message_bytes(message) for message in seed_messages(**options)]


def field_names() -> tuple[str, ...]:
    """Every top-level key the seed bodies use (envelope included)."""
    names: set[str] = set()
    for frame in seed_frames():
        names.update(_split(frame)[0])
    return tuple(sorted(names))


def assemble(body: bytes, region: bytes = b"") -> bytes:
    """``u32 H | body``, then padding to 8 and ``region`` if there is one."""
    head = _HEADER.pack(len(body)) + body
    return head + bytes(-len(head) % 8) + region if region else head


def _split(frame: bytes) -> tuple[Any, bytes]:
    """(body with raw ext values, region) of a well-formed frame; raises if it is not."""
    (size,) = _HEADER.unpack_from(frame, 0)
    body = msgpack.unpackb(frame[4 : 4 + size], ext_hook=msgpack.ExtType, raw=False,
                           strict_map_key=False, timestamp=0)
    return body, frame[(4 + size + 7) // 8 * 8 :]


def _slots(root: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value below ``root``, depth first."""
    found: list[tuple[Any, Any]] = []
    stack = [root]
    while stack:
        item = stack.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item)) if isinstance(item, list) else []
        for key in keys:
            found.append((item, key))
            stack.append(item[key])
    return found


def _retensor(frame: bytes, a: int, b: int) -> bytes:
    """Replace one item (dtype, shape, offset or nbytes) of one tensor header."""
    body, region = _split(frame)
    tensors = [(c, k) for c, k in _slots(body) if isinstance(c[k], msgpack.ExtType) and c[k].code == 1]
    if not tensors:
        return _field(frame, a, b)
    container, key = tensors[a % len(tensors)]
    header = msgpack.unpackb(container[key].data, raw=False)
    item = (a // len(tensors)) % 4
    choices = [header[item] + 8, header[item] - 8, len(region), len(region) + 8, *INTERESTING]
    header[item] = choices[b % len(choices)] if item >= 2 else INTERESTING[b % len(INTERESTING)]
    container[key] = msgpack.ExtType(1, msgpack.packb(header, use_bin_type=True))
    return assemble(msgpack.packb(body, use_bin_type=True), region)


def _field(frame: bytes, a: int, b: int) -> bytes:
    """Replace one value anywhere in the body by an :data:`INTERESTING` or a random one."""
    body, region = _split(frame)
    slots = _slots(body)
    if not slots:
        return frame
    container, key = slots[a % len(slots)]
    if b < len(INTERESTING):
        container[key] = INTERESTING[b]
    else:
        container[key] = random_value(random.Random(a * 256 + b), len(region))
    return assemble(msgpack.packb(body, use_bin_type=True), region)


def _kind(frame: bytes, a: int, b: int) -> bytes:
    """Relabel the message as another kind (or drop one top-level key)."""
    body, region = _split(frame)
    if not isinstance(body, dict) or not body:
        return frame
    if a % 2:
        body["kind"] = KINDS[b % len(KINDS)]
    else:
        del body[list(body)[b % len(body)]]
    return assemble(msgpack.packb(body, use_bin_type=True), region)


def mutate(frame: bytes, op: str, a: int, b: int) -> bytes:
    """Apply mutation ``op`` with parameters ``a`` (a position) and ``b`` (a byte or choice)."""
    n = len(frame)
    if op == "flip" and n:
        i = a % n
        return frame[:i] + bytes([frame[i] ^ (1 << (b % 8))]) + frame[i + 1 :]
    if op == "set" and n:
        i = a % n
        return frame[:i] + bytes([b % 256]) + frame[i + 1 :]
    if op == "truncate":
        return frame[: a % (n + 1)]
    if op == "insert":
        i = a % (n + 1)
        return frame[:i] + bytes([b % 256]) * (1 + b % 9) + frame[i:]
    if op == "delete":
        i = a % (n + 1)
        return frame[:i] + frame[i + 1 + b % 16 :]
    if op == "repeat" and n:
        i = a % n
        return frame[: i + 1 + b % 24] + frame[i:]
    if op == "header" and n >= 4:
        (size,) = _HEADER.unpack_from(frame, 0)
        new = [size + b % 64 - 32, 0, 2**32 - 1, n, n - 3, n - 4, size + 8 * (b % 4)][a % 7]
        return _HEADER.pack(new % 2**32) + frame[4:]
    if op in ("tensor", "field", "kind", "drop"):
        try:
            if op in ("kind", "drop"):
                return _kind(frame, 2 * a + (op == "kind"), b)
            return (_retensor if op == "tensor" else _field)(frame, a, b)
        except Exception:  # not a well-formed frame any more: fall back to a byte change
            return mutate(frame, "set", a, b)
    return frame + bytes([b % 256])


def _random_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(["", "x", "float32", "fuzz", "add", "#fuzz", "wss://127.0.0.1:9", "__class__"])
    if roll < 0.97:
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0xD7FF)])) for _ in range(rng.randint(0, 40)))
    return "y" * rng.choice([128, 129, 65536, 65537])


def _random_int(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.4:
        return rng.randint(-4, 300)
    if roll < 0.7:
        return int(rng.choice([v for v in INTERESTING if type(v) is int]))
    return rng.randint(-(2**63), 2**64 - 1)


def _random_ext(rng: random.Random, region: int, node_id: str) -> msgpack.ExtType:
    code = rng.choice([1, 1, 1, 2, 2, 3, 4, 5]) if rng.random() < 0.9 else rng.randint(0, 127)
    if rng.random() < 0.15:
        return msgpack.ExtType(code, rng.randbytes(rng.randint(0, 24)))
    if code == 1:
        dtype = rng.choice(list(DTYPES)) if rng.random() < 0.9 else _random_text(rng)
        itemsize = torch.empty((), dtype=DTYPES.get(str(dtype), torch.uint8)).element_size()
        offset = 8 * rng.randint(0, region // 8)
        numel = rng.randint(0, max(0, region - offset) // itemsize)
        shape: list[Any] = rng.choice([[numel], [1, numel], [numel, 1], [] if numel == 1 else [numel]])
        nbytes: Any = numel * itemsize
        if rng.random() < 0.3:
            odd_shape = [_random_int(rng) for _ in range(rng.randint(0, 3))]
            shape, offset, nbytes = rng.choice([(_random_value(rng, 2, 0, node_id), offset, nbytes), (odd_shape, offset, nbytes),
                                                (shape, _random_int(rng), nbytes), (shape, offset, _random_int(rng))])
        data: Any = [dtype, shape, offset, nbytes]
    elif code == 2:
        data = [rng.choice([node_id, _random_text(rng)]), _random_int(rng)]
    elif code == 3:
        data = [rng.choice([None, _random_int(rng), _random_int(rng), _random_value(rng, 3, 0, node_id)])
                for _ in range(rng.choice([3, 3, 3, 2, 4]))]
    elif code == 4:
        return msgpack.ExtType(4, b"" if rng.random() < 0.9 else b"\x00")
    elif code == 5:
        return msgpack.ExtType(5, rng.choice(list(DTYPES) + ["complex64", "qint8", "\u00e9"]).encode())
    else:
        data = _random_value(rng, 2, region, node_id)
    return msgpack.ExtType(code, msgpack.packb(data, use_bin_type=True))


def _random_value(rng: random.Random, depth: int, region: int, node_id: str) -> Any:
    roll = rng.random()
    if depth < 20 and roll < 0.12:
        return [_random_value(rng, depth + 1, region, node_id) for _ in range(rng.randint(0, 5))]
    if depth < 20 and roll < 0.2:
        return {_random_text(rng): _random_value(rng, depth + 1, region, node_id) for _ in range(rng.randint(0, 4))}
    if roll < 0.22:
        return rng.choice([[0] * rng.randint(100, 3000), {str(i): i for i in range(rng.randint(100, 1000))}])
    if roll < 0.24:  # deep nesting, beyond the limit of 16 more often than not
        value: Any = rng.choice([0, None, "deep"])
        for _ in range(rng.randint(8, 40)):
            value = [value] if rng.random() < 0.5 else {"d": value}
        return value
    leaf = rng.randrange(8)
    if leaf == 0:
        return rng.choice([None, True, False])
    if leaf in (1, 2):
        return _random_int(rng)
    if leaf == 3:
        return rng.choice([rng.uniform(-1e9, 1e9), math.nan, math.inf, -math.inf, -0.0, 5e-324])
    if leaf == 4:
        return _random_text(rng)
    if leaf == 5:
        return rng.randbytes(rng.choice([0, 16, 32, rng.randint(0, 80)]))
    return _random_ext(rng, region, node_id)


def random_value(rng: random.Random, region: int = 0, node_id: str = "fuzz") -> Any:
    """A random msgpack-packable value: grammar values, ext types 1-5 (valid or not), edges."""
    return _random_value(rng, 0, region, node_id)


def random_frame(rng: random.Random, names: tuple[str, ...], node_id: str = "fuzz") -> bytes:
    """A structurally valid frame: a map with (mostly valid) envelope keys and random fields."""
    region = rng.randbytes(8 * rng.randint(0, 8))
    body: dict[Any, Any] = {}
    envelope: list[tuple[str, Callable[[], Any]]] = [
        ("v", lambda: PROTOCOL_VERSION), ("kind", lambda: rng.choice(KINDS)),
        ("id", lambda: rng.choice([rng.randint(1, 1000), rng.randint(0, 2**64 - 1)]))]
    for key, good in envelope:
        roll = rng.random()
        if roll < 0.85:
            body[key] = good()
        elif roll < 0.95:
            body[key] = random_value(rng, len(region), node_id)
    for _ in range(rng.randint(0, 6)):
        key = rng.choice(names) if rng.random() < 0.85 else _random_text(rng)
        body[key] = random_value(rng, len(region), node_id)
    if rng.random() < 0.03:
        body[rng.choice([1, b"k", -1.5])] = 0  # non-str key
    items = list(body.items())
    rng.shuffle(items)
    packed = msgpack.packb(dict(items), use_bin_type=True)
    if rng.random() < 0.05:  # not a map, or trailing bytes after the body
        packed = rng.choice([msgpack.packb(random_value(rng), use_bin_type=True), packed + b"\xc0"])
    return assemble(packed, region)


def random_input(rng: random.Random, seeds: list[bytes], names: tuple[str, ...], node_id: str = "fuzz") -> bytes:
    """One fuzz input: random bytes (15%), a structured random frame (30%), a seed as is (5%),
    a seed with one structural change (20%) or with a few mutations of any sort (30%)."""
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.choice([0, 3, 4, 8, rng.randint(0, 300)]))
    if roll < 0.15:
        body = rng.randbytes(rng.randint(0, 200))
        return assemble(body, rng.randbytes(8 * rng.randint(0, 3)))
    if roll < 0.45:
        return random_frame(rng, names, node_id)
    frame = rng.choice(seeds)
    if roll < 0.5:
        return frame
    if roll < 0.7:
        return mutate(frame, rng.choice(["field", "field", "tensor", "kind", "drop"]), rng.randrange(2**20), rng.randrange(256))
    for _ in range(rng.choice([1, 1, 2, 3, 6])):
        frame = mutate(frame, rng.choice(MUTATIONS), rng.randrange(2**20), rng.randrange(256))
    return frame
