"""The codec: bytes in, messages out, and every malformed frame gets its error code.

Malformed frames are built by hand with ``msgpack`` and ``struct`` so that
the tests do not trust the encoder they check.  Plain synchronous tests.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import random
import struct
from typing import Any, Callable, Mapping

import msgpack
import pytest
import torch

from tests.protocol.federated_examples import EXAMPLES as FEDERATED_EXAMPLES
from tests.protocol.mpc_examples import EXAMPLES as MPC_EXAMPLES
from tests.protocol.secagg_examples import EXAMPLES as SECAGG_EXAMPLES
from protocol.codec import ExtCode, decode_message, encode_message, encode_message_bytes
from protocol.errors import (
    BadTensor,
    ErrorCode,
    LocalProtocolError,
    MalformedMessage,
    MessageTooLarge,
    RemoteProtocolError,
    UnknownKind,
    VersionMismatch,
)
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import (
    MAX_CONTAINER_LEN,
    MAX_DELETE_BATCH,
    MAX_NESTING_DEPTH,
    MAX_RESULTS,
    MAX_STRING_BYTES,
    MAX_TENSOR_DIMS,
    PAYLOAD_ALIGNMENT,
    PROTOCOL_VERSION,
)
from protocol.records import DatasetPolicy, DatasetSummary, NodeRecord, NodeStatus, Role
from protocol.streams import PutChunkRequest, ReadReply, ReadRequest
from protocol.messages import (
    AckReply,
    DeliverRequest,
    DeregisterRequest,
    ExpectRequest,
    HeartbeatRequest,
    NodesReply,
    NodesRequest,
    RegisterReply,
    RegisterRequest,
    TransferRequest,
    CommandRequest,
    DeleteRequest,
    DescribeReply,
    DescribeRequest,
    ErrorReply,
    GetReply,
    GetRequest,
    HelloReply,
    HelloRequest,
    ListReply,
    ListRequest,
    Message,
    MessageKind,
    ObjectInfo,
    PutRequest,
    ReleaseRequest,
    SyncReply,
    SyncRequest,
)
from protocol.tensors import DTYPES
from protocol.values import PointerRef

# --- helpers ---------------------------------------------------------------


def _align(n: int) -> int:
    return (n + PAYLOAD_ALIGNMENT - 1) // PAYLOAD_ALIGNMENT * PAYLOAD_ALIGNMENT


def build_frame(body: object, region: bytes = b"") -> bytes:
    """``u32 H | msgpack body | zero padding | region``, by hand."""
    raw: bytes = msgpack.packb(body, use_bin_type=True)
    head = struct.pack("<I", len(raw)) + raw
    if region:
        head += bytes(_align(len(head)) - len(head)) + region
    return head


def split_frame(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The body (ext values left as ``msgpack.ExtType``) and the payload region."""
    (length,) = struct.unpack_from("<I", data, 0)
    body = msgpack.unpackb(data[4 : 4 + length], raw=False)
    return body, data[_align(4 + length) :]


def rewrite(message: Message, change: Callable[[dict[str, Any]], None]) -> bytes:
    """Encode ``message``, let ``change`` edit its body, rebuild the frame."""
    body, region = split_frame(encode_message_bytes(message))
    change(body)
    return build_frame(body, region)


def tensor_ext(dtype: object, shape: object, offset: object, nbytes: object) -> msgpack.ExtType:
    return msgpack.ExtType(ExtCode.TENSOR, msgpack.packb([dtype, shape, offset, nbytes]))


def put_frame(ext: msgpack.ExtType, region: bytes = b"", request_id: int = 2) -> bytes:
    body = {"v": 1, "kind": "put", "id": request_id, "object_id": 7, "value": ext}
    return build_frame(body, region)


def command_frame(args: list[Any], request_id: int = 3, **extra: Any) -> bytes:
    body = {"v": 1, "kind": "command", "id": request_id, "op": "add", "target": None,
            "args": args, "kwargs": {}, "results": [9]}
    body.update(extra)
    return build_frame(body)


def decode_error(data: bytes, max_bytes: int | None = None) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        if max_bytes is None:
            decode_message(data)
        else:
            decode_message(data, max_bytes)
    return info.value


def assert_bad(
    data: bytes, cls: type[RemoteProtocolError], code: ErrorCode, **kw: Any
) -> RemoteProtocolError:
    exc = decode_error(data, **kw)
    assert type(exc) is cls, f"{type(exc).__name__}: {exc}"
    assert exc.code is code
    return exc


def assert_same(expected: object, actual: object, where: str = "message") -> None:
    """Deep equality; tensors by dtype, shape and torch.equal; lists == tuples."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        assert actual.dtype == expected.dtype, where
        assert actual.shape == expected.shape, where
        assert torch.equal(actual, expected), where
    elif dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        assert type(actual) is type(expected), where
        for field in dataclasses.fields(expected):
            assert_same(getattr(expected, field.name), getattr(actual, field.name), f"{where}.{field.name}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same(e, a, f"{where}[{i}]")
    elif isinstance(expected, Mapping):
        assert isinstance(actual, Mapping) and set(actual) == set(expected), where
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}[{key!r}]")
    elif expected is Ellipsis or expected is None:
        assert actual is expected, where
    else:
        assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
        assert actual == expected, where


def round_trip(message: Message) -> Message:
    return decode_message(encode_message_bytes(message))


def sample(dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A deterministic tensor of ``dtype`` with distinct-ish values."""
    base = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
    if dtype is torch.bool:
        return (base % 3 == 0).reshape(shape)
    if dtype.is_floating_point:
        return (base.to(torch.float64) * 0.5 - 3.25).to(dtype)
    if dtype is torch.uint8:
        return ((base * 37) % 251).to(dtype)
    return ((base * 37) % 251 - 125).to(dtype)


ALICE = NodeId("alice")
SECRET = bytes(range(16))

FINGERPRINT = "sha256:" + "ab" * 32
TICKET = bytes(range(32))
CHUNK = torch.arange(16, dtype=torch.uint8)
RECORD = NodeRecord(
    ALICE, "wss://alice.example:8765", FINGERPRINT, (Role.DATA_OWNER, Role.COMPUTE), ("#hospital",),
    (
        DatasetSummary("breast_cancer", ("#breast_cancer",), "UCI WDBC", (30,), 569),
        DatasetSummary("digits", ("#digits",), "", (64,), 1797, DatasetPolicy(
            True, 10.0, 7.5, 1e-5, 1.0, 1.0, 16, 32, 0, 1_000_000, None,
        )),
        DatasetSummary("open", (), "", (2,), 40, DatasetPolicy(False, min_batch=1, allowed_layers=("Linear",))),
    ),
)
BARE = NodeRecord(NodeId("bob"), "ws://[::1]:9000", FINGERPRINT)

EXAMPLES: dict[MessageKind, Message] = {
    MessageKind.HELLO: HelloRequest(
        RequestId(1), PROTOCOL_VERSION, "notebook", ("client", "trainer"),
        {"scheme": "anonymous", "secret": SECRET},
    ),
    MessageKind.HELLO_REPLY: HelloReply(
        RequestId(1), ALICE, "anon-0123456789abcdef", ("data_owner",), 256 * 1024 * 1024
    ),
    MessageKind.PUT: PutRequest(RequestId(2), ObjectId(2**64 - 1), sample(torch.float32, (2, 3))),
    MessageKind.GET: GetRequest(RequestId(3), ObjectId(7), True),
    MessageKind.GET_REPLY: GetReply(RequestId(3), sample(torch.int64, (4,))),
    MessageKind.DELETE: DeleteRequest(RequestId(4), (ObjectId(1), ObjectId(2**63), ObjectId(0))),
    MessageKind.COMMAND: CommandRequest(
        RequestId(5), "add", PointerRef(ALICE, ObjectId(11)),
        (PointerRef(ALICE, ObjectId(12)),), {"alpha": 2}, (ObjectId(13),),
    ),
    MessageKind.SYNC: SyncRequest(RequestId(6)),
    MessageKind.SYNC_REPLY: SyncReply(RequestId(6)),
    MessageKind.LIST: ListRequest(RequestId(7)),
    MessageKind.LIST_REPLY: ListReply(
        RequestId(7),
        (
            ObjectInfo(ObjectId(1), "float32", (2, 3)),
            ObjectInfo(ObjectId(2), "bool", (), "user:hospital", False, True),
        ),
    ),
    MessageKind.DESCRIBE: DescribeRequest(RequestId(8), (ObjectId(1), ObjectId(2))),
    MessageKind.DESCRIBE_REPLY: DescribeReply(
        RequestId(8), (ObjectInfo(ObjectId(1), "int64", (0, 5)),)
    ),
    MessageKind.ERROR: ErrorReply(
        RequestId(9), "NOT_FOUND", "object 0x7 not found",
        {"object_id": 7, "ratio": 0.5, "flag": True, "none": None, "text": "x"},
    ),
    MessageKind.ACK: AckReply(RequestId(10)),
    MessageKind.REGISTER: RegisterRequest(RequestId(11), RECORD),
    MessageKind.REGISTER_REPLY: RegisterReply(RequestId(11), 2.5),
    MessageKind.HEARTBEAT: HeartbeatRequest(RequestId(12)),
    MessageKind.DEREGISTER: DeregisterRequest(RequestId(13)),
    MessageKind.NODES: NodesRequest(RequestId(14), "#breast_cancer"),
    MessageKind.NODES_REPLY: NodesReply(
        RequestId(14), (NodeStatus(RECORD, 1764000000.5, True), NodeStatus(BARE, 12.0, False))
    ),
    MessageKind.EXPECT: ExpectRequest(RequestId(15), ObjectId(21), ALICE, FINGERPRINT, TICKET),
    MessageKind.TRANSFER: TransferRequest(
        RequestId(16), ObjectId(20), NodeId("bob"), "wss://10.0.0.2:8765", FINGERPRINT,
        ObjectId(21), TICKET, True,
    ),
    MessageKind.DELIVER: DeliverRequest(
        RequestId(17), ObjectId(21), TICKET, "float64", (3,), 0, CHUNK, True,
        (("@mover", ("@mover",)), ("user:hospital", ("@mover", "user:hospital"))), True,
    ),
    MessageKind.PUT_CHUNK: PutChunkRequest(
        RequestId(18), ObjectId(22), "int16", (4, 4), 8, CHUNK, False, True
    ),
    MessageKind.READ: ReadRequest(RequestId(19), ObjectId(22), 8, 16),
    MessageKind.READ_REPLY: ReadReply(RequestId(19), CHUNK),
    MessageKind.RELEASE: ReleaseRequest(RequestId(20), ObjectId(22), "user:bob"),
}
EXAMPLES.update(FEDERATED_EXAMPLES)
EXAMPLES.update(MPC_EXAMPLES)
EXAMPLES.update(SECAGG_EXAMPLES)

# --- round trips ------------------------------------------------------------


def test_examples_cover_every_kind() -> None:
    """The round-trip examples include one message of every kind."""
    assert set(EXAMPLES) == set(MessageKind)
    for kind, message in EXAMPLES.items():
        assert message.KIND is kind


@pytest.mark.parametrize("kind", list(MessageKind), ids=lambda k: k.value)
def test_every_kind_round_trips(kind: MessageKind) -> None:
    """Each message kind decodes to an equal message of the same class."""
    message = EXAMPLES[kind]
    assert_same(message, round_trip(message))


def test_optional_fields_take_their_defaults_when_absent() -> None:
    """get.delete defaults to false, command.target to nil, error.details to {}."""
    get = decode_message(rewrite(GetRequest(RequestId(1), ObjectId(5), True), lambda b: b.pop("delete")))
    assert isinstance(get, GetRequest) and get.delete is False
    command = EXAMPLES[MessageKind.COMMAND]
    no_target = decode_message(rewrite(command, lambda b: b.pop("target")))
    assert isinstance(no_target, CommandRequest) and no_target.target is None
    error = decode_message(rewrite(EXAMPLES[MessageKind.ERROR], lambda b: b.pop("details")))
    assert isinstance(error, ErrorReply) and dict(error.details) == {}


def test_unknown_extra_fields_are_ignored() -> None:
    """A body with fields its kind does not define still decodes."""
    decoded = decode_message(rewrite(SyncRequest(RequestId(4)), lambda b: b.update(extra=[1, "x"])))
    assert_same(SyncRequest(RequestId(4)), decoded)


def test_error_reply_with_request_id_zero_round_trips() -> None:
    """An error answering an unreadable frame uses id 0 and survives a round trip."""
    message = ErrorReply(RequestId(0), "BAD_MESSAGE", "body is not valid msgpack", {})
    assert_same(message, round_trip(message))


def test_hello_version_is_the_envelope_version() -> None:
    """A decoded hello's version field is the envelope's v."""
    decoded = round_trip(EXAMPLES[MessageKind.HELLO])
    assert isinstance(decoded, HelloRequest) and decoded.version == PROTOCOL_VERSION


TENSOR_CASES: dict[str, Callable[[torch.dtype], torch.Tensor]] = {
    "0d": lambda d: sample(d, ()),
    "empty": lambda d: sample(d, (0,)),
    "empty_2x0x3": lambda d: sample(d, (2, 0, 3)),
    "vector_5": lambda d: sample(d, (5,)),
    "matrix_2x3": lambda d: sample(d, (2, 3)),
    "cube_2x3x4": lambda d: sample(d, (2, 3, 4)),
    "transposed": lambda d: sample(d, (3, 4)).t(),
    "strided": lambda d: sample(d, (10,))[1::3],
    "expanded": lambda d: sample(d, (3, 1)).expand(3, 4),
}


@pytest.mark.parametrize("case", list(TENSOR_CASES))
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_tensor_round_trips_for_every_dtype(dtype_name: str, case: str) -> None:
    """Every allowlisted dtype round-trips in put and get_reply: 0-d, empty, non-contiguous."""
    tensor = TENSOR_CASES[case](DTYPES[dtype_name])
    for message in (PutRequest(RequestId(1), ObjectId(2), tensor), GetReply(RequestId(1), tensor)):
        decoded = round_trip(message)
        assert_same(message, decoded)
        assert isinstance(decoded, (PutRequest, GetReply)) and decoded.value.is_contiguous()


def test_several_tensors_in_one_frame_are_8_aligned() -> None:
    """Tensors of odd sizes in one command each get an 8-aligned payload offset."""
    tensors = [sample(torch.int8, (3,)), sample(torch.float64, (2,)), sample(torch.bool, (5,)),
               sample(torch.float16, (0,)), sample(torch.bfloat16, (3, 1)), sample(torch.int16, ())]
    args: tuple[Any, ...] = (tensors,)
    message = CommandRequest(RequestId(1), "stack", None, args, {"dim": 0}, (ObjectId(3),))
    frame = encode_message(message)
    data = frame.to_bytes()
    assert frame.nbytes == len(data)
    body, region = split_frame(data)
    offsets = [msgpack.unpackb(ext.data)[2] for ext in body["args"][0]]
    assert all(offset % PAYLOAD_ALIGNMENT == 0 for offset in offsets)
    assert offsets == sorted(offsets)
    assert_same(message, decode_message(data))


def test_frame_without_tensors_has_no_padding() -> None:
    """A frame without tensors is exactly the 4-byte header plus the body."""
    data = encode_message_bytes(SyncRequest(RequestId(1)))
    (length,) = struct.unpack_from("<I", data)
    assert len(data) == 4 + length


def test_nested_values_round_trip_in_command_args() -> None:
    """Lists, maps, slices, Ellipsis, None, dtypes, pointers, bytes and scalars round-trip."""
    index: list[Any] = [0, slice(1, None, 2), Ellipsis, None, slice(None, None, None), [0, 2], -1]
    value: dict[str, Any] = {
        "nested": [[1, [2.5, [None, True]]], {"deep": {"er": [b"\x00\xff", "text"]}}],
        "dtypes": [torch.float32, torch.int64, torch.bool, torch.bfloat16],
        "pointer": PointerRef(NodeId("bob"), ObjectId(2**64 - 1)),
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
        "floats": [0.0, -1.5, 1e300, float("inf")],
        "tensor": sample(torch.float32, (2, 2)),
        "slice": slice(-5, 10, None),
        "empty": [[], {}],
    }
    message = CommandRequest(
        RequestId(42), "getitem", PointerRef(ALICE, ObjectId(1)), (index, value),
        {"dim": 1, "dtype": torch.float64, "keepdim": False, "names": ["a", "b"], "nothing": None},
        (ObjectId(5), ObjectId(6)),
    )
    decoded = round_trip(message)
    assert_same(message, decoded)
    assert isinstance(decoded, CommandRequest)
    args: Any = decoded.args
    assert args[0][2] is Ellipsis
    assert isinstance(args[0][1], slice)
    assert isinstance(args[1]["dtypes"][0], torch.dtype)


def test_tuples_are_sent_as_arrays_and_decode_as_lists() -> None:
    """msgpack has no tuples: a tuple argument comes back as a list."""
    message = CommandRequest(RequestId(1), "permute", PointerRef(ALICE, ObjectId(1)),
                             ((1, 0),), {}, (ObjectId(2),))  # type: ignore[arg-type]
    decoded = round_trip(message)
    assert isinstance(decoded, CommandRequest) and decoded.args == ([1, 0],)


def _buffer_address(data: bytes | bytearray) -> int:
    if isinstance(data, bytearray):
        return ctypes.addressof(ctypes.c_char.from_buffer(data))
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    assert address is not None
    return address


@pytest.mark.parametrize("container", ["bytes", "bytearray", "memoryview"])
def test_decode_is_zero_copy(container: str) -> None:
    """The decoded tensor's memory lies inside the input buffer: no copy."""
    tensor = sample(torch.float32, (64, 16))
    raw = encode_message_bytes(PutRequest(RequestId(1), ObjectId(2), tensor))
    data: bytes | bytearray = bytearray(raw) if container != "bytes" else raw
    start = _buffer_address(data)
    decoded = decode_message(memoryview(data) if container == "memoryview" else data)
    assert isinstance(decoded, PutRequest)
    begin = decoded.value.data_ptr()
    end = begin + decoded.value.numel() * decoded.value.element_size()
    assert start <= begin and end <= start + len(data)
    assert begin % PAYLOAD_ALIGNMENT == start % PAYLOAD_ALIGNMENT
    if isinstance(data, bytearray):
        data[begin - start : begin - start + 4] = struct.pack("<f", 123.0)
        assert decoded.value[0, 0].item() == 123.0


def test_encode_is_zero_copy_for_contiguous_tensors() -> None:
    """The encoded frame's payload part is a view of the tensor's own memory."""
    tensor = sample(torch.int64, (128,))
    frame = encode_message(PutRequest(RequestId(1), ObjectId(2), tensor))
    payload = frame.parts[-1]
    assert isinstance(payload, memoryview) and payload.nbytes == tensor.numel() * 8
    tensor[0] = 99
    assert struct.unpack_from("<q", payload, 0)[0] == 99


# --- malformed frames: structure --------------------------------------------


def test_empty_input_is_bad_message() -> None:
    """An empty frame is BAD_MESSAGE."""
    assert_bad(b"", MalformedMessage, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize("data", [b"\x00", b"\x01\x00", b"\x00\x00\x00"])
def test_frame_shorter_than_header_is_bad_message(data: bytes) -> None:
    """A frame shorter than its 4-byte header is BAD_MESSAGE."""
    assert_bad(data, MalformedMessage, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize("claimed", [1, 19, 2**31, 2**32 - 1])
def test_header_length_beyond_frame_is_bad_message(claimed: int) -> None:
    """A body length larger than what follows the header is BAD_MESSAGE."""
    body = msgpack.packb({"v": 1, "kind": "sync", "id": 1})
    data = struct.pack("<I", min(len(body) + claimed, 2**32 - 1)) + body
    exc = assert_bad(data, MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert exc.details["frame"] == len(data)


def test_header_only_frame_is_bad_message() -> None:
    """A zero-length body (header only) is BAD_MESSAGE."""
    assert_bad(struct.pack("<I", 0), MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_random_bytes_raise_only_remote_protocol_error() -> None:
    """Hundreds of seeded random byte strings all raise RemoteProtocolError, nothing else."""
    rng = random.Random(0x7E55E7A)
    for _ in range(400):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        with pytest.raises(RemoteProtocolError):
            decode_message(data)


def test_random_bodies_behind_a_valid_header_raise_only_remote_protocol_error() -> None:
    """Random msgpack bodies with a correct length header raise RemoteProtocolError only."""
    rng = random.Random(1234)
    for _ in range(400):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        with pytest.raises(RemoteProtocolError):
            decode_message(struct.pack("<I", len(body)) + body)


def test_mutated_valid_frames_decode_or_raise_remote_protocol_error() -> None:
    """Valid frames with random byte flips, cuts and insertions never raise anything else."""
    rng = random.Random(99)
    frames = [encode_message_bytes(m) for m in EXAMPLES.values()]
    frames.append(encode_message_bytes(CommandRequest(
        RequestId(3), "getitem", PointerRef(ALICE, ObjectId(5)),
        ([0, slice(1, None, 2), Ellipsis, None, torch.int64, sample(torch.int32, (3,))],),
        {"k": {"a": [1.5, b"x"]}}, (ObjectId(9),),
    )))
    for _ in range(3000):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randrange(1, 4)):
            choice = rng.randrange(3)
            if choice == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif choice == 1 and data:
                del data[rng.randrange(len(data)) :]
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        try:
            decode_message(bytes(data))
        except RemoteProtocolError:
            pass


def test_truncated_msgpack_is_bad_message() -> None:
    """A body cut short (header adjusted to match) is BAD_MESSAGE."""
    body = msgpack.packb({"v": 1, "kind": "sync", "id": 1})
    for cut in range(1, len(body)):
        data = struct.pack("<I", cut) + body[:cut]
        assert_bad(data, MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_trailing_bytes_inside_the_body_are_bad_message() -> None:
    """Two msgpack values in the body is BAD_MESSAGE."""
    body = msgpack.packb({"v": 1, "kind": "sync", "id": 1}) + b"\xc0"
    assert_bad(struct.pack("<I", len(body)) + body, MalformedMessage, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize("body", [[1, 2], 5, "sync", None, b"bytes", 1.5, True])
def test_body_that_is_not_a_map_is_bad_message(body: object) -> None:
    """A body that is not a msgpack map is BAD_MESSAGE."""
    assert_bad(build_frame(body), MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_map_with_integer_keys_is_bad_message() -> None:
    """Integer map keys are refused (BAD_MESSAGE)."""
    assert_bad(build_frame({"v": 1, "kind": "sync", "id": 1, 5: "x"}), MalformedMessage,
               ErrorCode.BAD_MESSAGE)


def test_missing_id_is_bad_message_without_request_id() -> None:
    """Without an id the error is BAD_MESSAGE with request id 0."""
    exc = assert_bad(build_frame({"v": 1, "kind": "sync"}), MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert exc.request_id == 0


def test_missing_kind_is_bad_message_with_request_id() -> None:
    """Without a kind the error is BAD_MESSAGE, still carrying the readable id (PROTOCOL.md 4)."""
    exc = assert_bad(build_frame({"v": 1, "id": 5}), MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert exc.request_id == 5


def test_missing_version_is_bad_message_with_request_id() -> None:
    """A body without v is BAD_MESSAGE carrying the frame's request id."""
    exc = assert_bad(build_frame({"kind": "sync", "id": 5}), MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert exc.request_id == 5


@pytest.mark.parametrize(
    "body",
    [
        {"v": 1, "kind": 5, "id": 1},
        {"v": 1, "kind": b"sync", "id": 1},
        {"v": 1, "kind": "sync", "id": -1},
        {"v": 1, "kind": "sync", "id": "1"},
        {"v": 1, "kind": "sync", "id": 1.0},
        {"v": 1, "kind": "sync", "id": None},
        {"v": "1", "kind": "sync", "id": 1},
        {"v": 1.0, "kind": "sync", "id": 1},
    ],
)
def test_mistyped_envelope_is_bad_message(body: dict[str, Any]) -> None:
    """A kind that is not a str, an id that is not a uint, a v that is not an int: BAD_MESSAGE."""
    assert_bad(build_frame(body), MalformedMessage, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize("kind", ["nope", "", "HELLO", "sync ", "x" * 1000])
def test_unknown_kind_is_unknown_kind_with_request_id(kind: str) -> None:
    """An unknown kind string is UNKNOWN_KIND, and the error keeps the request id."""
    exc = assert_bad(build_frame({"v": 1, "kind": kind, "id": 77}), UnknownKind, ErrorCode.UNKNOWN_KIND)
    assert exc.request_id == 77
    assert len(str(exc.details["kind"])) <= 64


@pytest.mark.parametrize("version", [0, 2, 255, 2**32])
def test_wrong_version_is_version_mismatch_with_request_id(version: int) -> None:
    """A v other than PROTOCOL_VERSION is VERSION_MISMATCH, naming both versions."""
    exc = assert_bad(build_frame({"v": version, "kind": "hello", "id": 8}), VersionMismatch,
                     ErrorCode.VERSION_MISMATCH)
    assert exc.request_id == 8
    assert exc.details == {"ours": PROTOCOL_VERSION, "theirs": version}


def test_version_is_checked_before_fields() -> None:
    """A wrong-version hello with no fields is VERSION_MISMATCH, not a missing field."""
    exc = decode_error(build_frame({"v": 2, "kind": "hello", "id": 1}))
    assert exc.code is ErrorCode.VERSION_MISMATCH


# --- malformed frames: fields per kind --------------------------------------

REQUIRED_FIELDS: dict[MessageKind, tuple[str, ...]] = {
    MessageKind.HELLO: ("client", "roles", "credentials"),
    MessageKind.HELLO_REPLY: ("node_id", "principal", "roles", "max_message_bytes"),
    MessageKind.PUT: ("object_id", "value"),
    MessageKind.GET: ("object_id",),
    MessageKind.GET_REPLY: ("value",),
    MessageKind.DELETE: ("object_ids",),
    MessageKind.COMMAND: ("op", "args", "kwargs", "results"),
    MessageKind.SYNC: (),
    MessageKind.SYNC_REPLY: (),
    MessageKind.LIST: (),
    MessageKind.LIST_REPLY: ("objects",),
    MessageKind.DESCRIBE: ("object_ids",),
    MessageKind.DESCRIBE_REPLY: ("objects",),
    MessageKind.ERROR: ("code", "message"),
}

WRONG_VALUES: dict[str, list[Any]] = {
    "client": [5, "", "c" * 129, None, ["c"]],
    "roles": ["client", {"a": 1}, [5], [""], ["r"] * 17],
    "credentials": [[1], "anonymous", None],
    "node_id": ["", 5, "n" * 129],
    "principal": [3, None, b"anon"],
    "max_message_bytes": [-1, "big", 1.5, None, True],
    "object_id": [-1, "7", 7.0, None, True],
    "value": [3, [1, 2], None, b"\x00\x01"],
    "delete": [1, 0, "yes", None],
    "object_ids": ["x", 5, [-1], ["1"], [True], {"a": 1}],
    "op": ["", 5, None, "o" * 129],
    "target": [5, "alice", [1]],
    "args": [{}, "x", None],
    "kwargs": [[], "x", None],
    "results": [[], "x", [-1], [True], list(range(1, MAX_RESULTS + 2))],
    "objects": ["x", [5], [{"object_id": 1, "dtype": "float32", "shape": "x"}],
                [{"object_id": 1, "dtype": "float32", "shape": [-1]}]],
    "code": [7, "", None],
    "message": [None, 5],
    "details": [{"a": [1]}, {"a": {"b": 1}}, [1], "x"],
}


def _required_cases() -> list[tuple[MessageKind, str]]:
    return [(kind, field) for kind, fields in REQUIRED_FIELDS.items() for field in fields]


@pytest.mark.parametrize("kind,field", _required_cases(), ids=lambda v: getattr(v, "value", v))
def test_missing_field_is_bad_message_naming_it(kind: MessageKind, field: str) -> None:
    """Each required field, when absent, gives BAD_MESSAGE naming it, with the request id."""
    message = EXAMPLES[kind]
    exc = assert_bad(rewrite(message, lambda b: b.pop(field)), MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert exc.details.get("field") == field
    assert exc.request_id == message.id


def _wrong_cases() -> list[tuple[MessageKind, str, Any]]:
    cases: list[tuple[MessageKind, str, Any]] = []
    optional = {MessageKind.GET: ("delete",), MessageKind.COMMAND: ("target",),
                MessageKind.ERROR: ("details",)}
    for kind, fields in REQUIRED_FIELDS.items():
        for field in fields + optional.get(kind, ()):
            cases.extend((kind, field, value) for value in WRONG_VALUES[field])
    return cases


@pytest.mark.parametrize("kind,field,value", _wrong_cases())
def test_mistyped_field_is_bad_message(kind: MessageKind, field: str, value: Any) -> None:
    """Each field given a value of the wrong type or range gives BAD_MESSAGE with the request id."""
    message = EXAMPLES[kind]
    exc = assert_bad(rewrite(message, lambda b: b.__setitem__(field, value)), MalformedMessage,
                     ErrorCode.BAD_MESSAGE)
    assert str(exc.details.get("field", "")).startswith(field)
    assert exc.request_id == message.id


@pytest.mark.parametrize(
    "frame",
    [
        build_frame({"v": 1, "kind": "sync", "id": True}),
        build_frame({"v": True, "kind": "sync", "id": 1}),
        build_frame({"v": 1, "kind": "get", "id": 1, "object_id": True}),
        build_frame({"v": 1, "kind": "delete", "id": 1, "object_ids": [1, False]}),
        build_frame({"v": 1, "kind": "hello_reply", "id": 1, "node_id": "a", "principal": "p",
                     "roles": [], "max_message_bytes": True}),
        command_frame([msgpack.ExtType(ExtCode.SLICE, msgpack.packb([True, None, None]))]),
        command_frame([msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["alice", True]))]),
        put_frame(tensor_ext("int32", [2], False, 8), bytes(8)),
        put_frame(tensor_ext("int32", [2], 0, True), bytes(8)),
    ],
    ids=["id", "v", "object_id", "object_ids", "max_message_bytes", "slice", "pointer",
         "tensor.offset", "tensor.nbytes"],
)
def test_bool_where_int_expected_is_bad_message(frame: bytes) -> None:
    """msgpack true/false is never accepted as an integer."""
    assert_bad(frame, MalformedMessage, ErrorCode.BAD_MESSAGE)


def _scalar_fields(kind: type[bool] | type[int]) -> list[tuple[MessageKind, str]]:
    """(kind, field) of every top-level field whose example value is exactly of type ``kind``."""
    return [
        (message.KIND, field)
        for message in EXAMPLES.values()
        for field, value in split_frame(encode_message_bytes(message))[0].items()
        if type(value) is kind and field not in ("v", "id")
    ]


@pytest.mark.parametrize("kind,field", _scalar_fields(int), ids=lambda v: getattr(v, "value", v))
def test_every_integer_field_refuses_a_boolean(kind: MessageKind, field: str) -> None:
    """An integer (or number) field given true or false is BAD_MESSAGE naming it (PROTOCOL.md 4)."""
    message = EXAMPLES[kind]
    for value in (True, False):
        exc = assert_bad(rewrite(message, lambda b: b.__setitem__(field, value)), MalformedMessage,
                         ErrorCode.BAD_MESSAGE)
        assert str(exc.details.get("field", "")).startswith(field)


@pytest.mark.parametrize("kind,field", _scalar_fields(bool), ids=lambda v: getattr(v, "value", v))
def test_every_boolean_field_refuses_an_integer(kind: MessageKind, field: str) -> None:
    """A boolean field given 1 or 0 is BAD_MESSAGE naming it: integers never stand for booleans (PROTOCOL.md 4)."""
    message = EXAMPLES[kind]
    for value in (1, 0):
        exc = assert_bad(rewrite(message, lambda b: b.__setitem__(field, value)), MalformedMessage,
                         ErrorCode.BAD_MESSAGE)
        assert exc.details.get("field") == field


def test_the_boolean_and_integer_cases_are_not_empty() -> None:
    """The two tests above see the fields they are about (get.delete among the booleans)."""
    assert (MessageKind.GET, "delete") in _scalar_fields(bool)
    assert (MessageKind.GET, "object_id") in _scalar_fields(int)


def test_bool_tensor_dimension_is_bad_tensor() -> None:
    """A boolean in a tensor shape is BAD_TENSOR."""
    assert_bad(put_frame(tensor_ext("int32", [True], 0, 4), bytes(8)), BadTensor, ErrorCode.BAD_TENSOR)


def test_reply_kinds_decode_as_replies() -> None:
    """The codec decodes reply kinds too (the session, not the codec, refuses them from clients)."""
    decoded = decode_message(build_frame({"v": 1, "kind": "sync_reply", "id": 3}))
    assert isinstance(decoded, SyncReply)


# --- malformed frames: tensors ----------------------------------------------


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "float8_e4m3fn", "quint8", "uint16",
                                   "", "Float32", "torch.float32", 5, None, ["float32"]])
def test_disallowed_dtype_is_bad_tensor(dtype: object) -> None:
    """A tensor dtype outside the allowlist is BAD_TENSOR."""
    assert_bad(put_frame(tensor_ext(dtype, [2], 0, 8), bytes(8)), BadTensor, ErrorCode.BAD_TENSOR)


@pytest.mark.parametrize("name", [b"complex64", b"float128", b""])
def test_disallowed_dtype_value_is_bad_tensor(name: bytes) -> None:
    """A dtype ext naming a dtype outside the allowlist is BAD_TENSOR."""
    frame = command_frame([msgpack.ExtType(ExtCode.DTYPE, name)])
    assert_bad(frame, BadTensor, ErrorCode.BAD_TENSOR)


@pytest.mark.parametrize(
    "dtype,shape,nbytes",
    [("int32", [2], 4), ("int32", [2], 16), ("float64", [3], 16), ("bool", [2, 2], 8),
     ("int64", [], 0), ("float32", [0], 8), ("bfloat16", [3], 8)],
)
def test_shape_times_itemsize_must_equal_nbytes(dtype: str, shape: list[int], nbytes: int) -> None:
    """A payload whose length is not product(shape) * itemsize is BAD_TENSOR."""
    exc = assert_bad(put_frame(tensor_ext(dtype, shape, 0, nbytes), bytes(_align(nbytes) or 8)),
                     BadTensor, ErrorCode.BAD_TENSOR)
    assert exc.details["actual"] == nbytes


@pytest.mark.parametrize(
    "shape",
    [[-1], [2, -3], "2", 2, None, [1.0], ["2"], [2**62], [1] * (MAX_TENSOR_DIMS + 1)],
)
def test_invalid_shape_is_bad_tensor(shape: object) -> None:
    """A shape that is not an array of at most 32 dims in [0, 2^62) is BAD_TENSOR."""
    assert_bad(put_frame(tensor_ext("uint8", shape, 0, 1), bytes(8)), BadTensor, ErrorCode.BAD_TENSOR)


def test_tensor_with_max_dims_decodes() -> None:
    """A tensor of exactly MAX_TENSOR_DIMS dimensions is accepted."""
    tensor = torch.ones([1] * MAX_TENSOR_DIMS, dtype=torch.uint8)
    assert_same(PutRequest(RequestId(1), ObjectId(1), tensor),
                round_trip(PutRequest(RequestId(1), ObjectId(1), tensor)))


class _AllocationSpy:
    """Wraps torch.empty/frombuffer and records how many elements each call made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        for name in ("empty", "frombuffer", "zeros"):
            original = getattr(torch, name)
            monkeypatch.setattr(torch, name, self._wrap(original))

    def _wrap(self, original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
            result = original(*args, **kwargs)
            self.sizes.append(result.numel())
            return result

        return spy


@pytest.mark.parametrize(
    "ext,max_bytes,code",
    [
        (tensor_ext("float32", [2**29], 0, 8), None, ErrorCode.TOO_LARGE),
        (tensor_ext("int8", [2**31], 0, 8), None, ErrorCode.TOO_LARGE),
        (tensor_ext("float32", [2**29], 0, 8), 2**40, ErrorCode.BAD_TENSOR),
        (tensor_ext("int32", [2**29], 0, 2**31), None, ErrorCode.BAD_TENSOR),
        (tensor_ext("float64", [2**16, 2**16, 2**16], 0, 8), None, ErrorCode.TOO_LARGE),
    ],
    ids=["shape-2GiB", "int8-2GiB", "shape-2GiB-large-limit", "nbytes-2GiB", "shape-2PiB"],
)
def test_huge_tensor_header_fails_without_allocating(
    monkeypatch: pytest.MonkeyPatch, ext: msgpack.ExtType, max_bytes: int | None, code: ErrorCode
) -> None:
    """A header claiming gigabytes over an 8-byte payload fails before any tensor is built."""
    spy = _AllocationSpy(monkeypatch)
    exc = decode_error(put_frame(ext, bytes(8)), max_bytes)
    assert exc.code is code
    assert all(size <= 1 for size in spy.sizes), spy.sizes


@pytest.mark.parametrize(
    "offset,nbytes,region",
    [(8, 8, 8), (2**63, 8, 8), (2**64 - 8, 8, 8), (0, 16, 8), (0, 8, 0)],
    ids=["past-end", "offset-2^63", "offset-near-2^64", "too-long", "no-region"],
)
def test_payload_outside_frame_raises_protocol_error(offset: int, nbytes: int, region: int) -> None:
    """A payload extending past the end of the frame is refused as BAD_TENSOR."""
    exc = decode_error(put_frame(tensor_ext("int32", [nbytes // 4], offset, nbytes), bytes(region)))
    assert isinstance(exc, BadTensor)
    assert exc.code is ErrorCode.BAD_TENSOR


def test_payload_offset_outside_frame_is_bad_tensor_as_error_help_says() -> None:
    """A payload outside the frame is BAD_TENSOR, as ERROR_HELP documents."""
    assert_bad(put_frame(tensor_ext("int32", [2], 8, 8), bytes(8)), BadTensor, ErrorCode.BAD_TENSOR)


def test_payload_offset_counts_from_the_region_start() -> None:
    """Offset 0 names the first byte after the body's padding, not the frame start."""
    region = struct.pack("<ii", 5, 6) + struct.pack("<ii", 7, 8)
    decoded = decode_message(put_frame(tensor_ext("int32", [2], 8, 8), region))
    assert isinstance(decoded, PutRequest) and decoded.value.tolist() == [7, 8]


@pytest.mark.parametrize("offset", [1, 4, 7, 12])
def test_unaligned_payload_offset_is_bad_tensor(offset: int) -> None:
    """A payload offset that is not a multiple of 8 is BAD_TENSOR."""
    exc = assert_bad(put_frame(tensor_ext("int8", [4], offset, 4), bytes(32)), BadTensor,
                     ErrorCode.BAD_TENSOR)
    assert exc.details["offset"] == offset


@pytest.mark.parametrize(
    "data",
    [msgpack.packb(["int32", [2], 0]), msgpack.packb(["int32", [2], 0, 8, 1]),
     msgpack.packb({"dtype": "int32"}), b"\xc1", b""],
    ids=["3-items", "5-items", "map", "invalid", "empty"],
)
def test_malformed_tensor_ext_is_bad_message(data: bytes) -> None:
    """A tensor ext whose data is not an array of 4 is BAD_MESSAGE."""
    frame = put_frame(msgpack.ExtType(ExtCode.TENSOR, data), bytes(8))
    assert_bad(frame, MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_zero_element_tensor_with_unrepresentable_shape_is_bad_tensor() -> None:
    """An empty tensor whose shape torch cannot represent is BAD_TENSOR."""
    assert_bad(put_frame(tensor_ext("float32", [0, 2**61, 2**61], 0, 0)), BadTensor,
               ErrorCode.BAD_TENSOR)


def test_zero_element_tensor_with_unrepresentable_shape_raises_remote_protocol_error() -> None:
    """Even a shape torch refuses to build yields a RemoteProtocolError, nothing else."""
    decode_error(put_frame(tensor_ext("float32", [0, 2**61, 2**61], 0, 0)))


# --- malformed frames: other ext types ----------------------------------------


@pytest.mark.parametrize("code", [0, 6, 9, 42, 127])
def test_unknown_ext_code_is_bad_message(code: int) -> None:
    """An ext type code outside 1..5 is BAD_MESSAGE."""
    exc = assert_bad(command_frame([msgpack.ExtType(code, b"\x00")]), MalformedMessage,
                     ErrorCode.BAD_MESSAGE)
    assert exc.details["ext"] == code


def test_timestamp_ext_is_bad_message() -> None:
    """msgpack's predefined timestamp ext (type -1) is refused like any unknown ext."""
    assert_bad(command_frame([msgpack.Timestamp(1, 2)]), MalformedMessage, ErrorCode.BAD_MESSAGE)


@pytest.mark.parametrize(
    "ext",
    [
        msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["alice"])),
        msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["alice", 1, 2])),
        msgpack.ExtType(ExtCode.POINTER, msgpack.packb([5, 1])),
        msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["", 1])),
        msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["alice", -1])),
        msgpack.ExtType(ExtCode.POINTER, b"\xc1"),
        msgpack.ExtType(ExtCode.SLICE, msgpack.packb([1, 2])),
        msgpack.ExtType(ExtCode.SLICE, msgpack.packb(["1", None, None])),
        msgpack.ExtType(ExtCode.SLICE, msgpack.packb([1.5, None, None])),
        msgpack.ExtType(ExtCode.ELLIPSIS, b"\x00"),
        msgpack.ExtType(ExtCode.DTYPE, "flöat".encode()),
    ],
    ids=["ptr-1", "ptr-3", "ptr-int-node", "ptr-empty-node", "ptr-negative", "ptr-invalid",
         "slice-2", "slice-str", "slice-float", "ellipsis-data", "dtype-non-ascii"],
)
def test_malformed_value_ext_is_bad_message(ext: msgpack.ExtType) -> None:
    """Malformed pointer, slice, ellipsis and dtype exts are BAD_MESSAGE."""
    assert_bad(command_frame([ext]), MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_put_value_must_be_a_tensor_not_another_ext() -> None:
    """A put whose value is a pointer is BAD_MESSAGE naming the value field."""
    frame = put_frame(msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["alice", 1])))
    exc = assert_bad(frame, MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert exc.details["field"] == "value"


# --- limits -------------------------------------------------------------------


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_at_the_limit_decodes() -> None:
    """Containers nested exactly MAX_NESTING_DEPTH deep (body map included) decode."""
    # body map (1) > args (2) > 14 more levels = 16
    decoded = decode_message(command_frame([_nested(MAX_NESTING_DEPTH - 2)]))
    assert isinstance(decoded, CommandRequest)


@pytest.mark.parametrize("extra", [1, 2, 100])
def test_nesting_beyond_the_limit_is_bad_message(extra: int) -> None:
    """Nesting deeper than MAX_NESTING_DEPTH is BAD_MESSAGE, for arrays and maps."""
    exc = assert_bad(command_frame([_nested(MAX_NESTING_DEPTH - 2 + extra)]), MalformedMessage,
                     ErrorCode.BAD_MESSAGE)
    assert exc.details["limit"] == MAX_NESTING_DEPTH
    deep_map: object = 1
    for _ in range(MAX_NESTING_DEPTH - 2 + extra):
        deep_map = {"k": deep_map}
    frame = command_frame([], kwargs={"k": deep_map})
    assert_bad(frame, MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_very_deep_nesting_is_bad_message() -> None:
    """Thousands of nested arrays are refused as BAD_MESSAGE, not a crash."""
    body = b"\x85\xa1v\x01\xa4kind\xa7command\xa2id\x01\xa2op\xa3add\xa4args" + b"\x91" * 5000 + b"\xc0"
    assert_bad(struct.pack("<I", len(body)) + body, MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_max_results_decodes_and_one_more_is_bad_message() -> None:
    """A command may name MAX_RESULTS result ids; one more is BAD_MESSAGE."""
    ok = command_frame([], results=list(range(1, MAX_RESULTS + 1)))
    decoded = decode_message(ok)
    assert isinstance(decoded, CommandRequest) and len(decoded.results) == MAX_RESULTS
    exc = assert_bad(command_frame([], results=list(range(1, MAX_RESULTS + 2))), MalformedMessage,
                     ErrorCode.BAD_MESSAGE)
    assert exc.details["field"] == "results"
    assert exc.request_id == 3


@pytest.mark.parametrize("kind", ["delete", "describe"])
def test_max_delete_batch_decodes_and_one_more_is_bad_message(kind: str) -> None:
    """delete and describe may name MAX_DELETE_BATCH ids; one more is BAD_MESSAGE."""
    ids = list(range(MAX_DELETE_BATCH))
    decoded = decode_message(build_frame({"v": 1, "kind": kind, "id": 1, "object_ids": ids}))
    assert len(decoded.object_ids) == MAX_DELETE_BATCH  # type: ignore[union-attr]
    frame = build_frame({"v": 1, "kind": kind, "id": 1, "object_ids": ids + [1]})
    assert_bad(frame, MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_frame_over_max_bytes_is_too_large() -> None:
    """A frame longer than max_bytes is TOO_LARGE, naming size and limit."""
    data = encode_message_bytes(EXAMPLES[MessageKind.PUT])
    decode_message(data, len(data))
    exc = assert_bad(data, MessageTooLarge, ErrorCode.TOO_LARGE, max_bytes=len(data) - 1)
    assert exc.details["size"] == len(data) and exc.details["limit"] == len(data) - 1


def test_tensor_larger_than_max_bytes_is_too_large() -> None:
    """A tensor needing more than max_bytes is TOO_LARGE even if the frame is smaller."""
    ext = tensor_ext("float64", [1024], 0, 8192)
    assert_bad(put_frame(ext, bytes(8192)), MessageTooLarge, ErrorCode.TOO_LARGE, max_bytes=8200)


def test_string_at_the_limit_decodes_and_longer_is_bad_message() -> None:
    """A str of MAX_STRING_BYTES bytes is accepted; one byte more is BAD_MESSAGE."""
    decode_message(command_frame(["a" * MAX_STRING_BYTES]))
    assert_bad(command_frame(["a" * (MAX_STRING_BYTES + 1)]), MalformedMessage, ErrorCode.BAD_MESSAGE)
    assert_bad(command_frame(["é" * (MAX_STRING_BYTES // 2 + 1)]), MalformedMessage,
               ErrorCode.BAD_MESSAGE)


def test_oversized_names_are_bad_message() -> None:
    """op, client and pointer node names longer than 128 characters are BAD_MESSAGE."""
    assert_bad(command_frame([], op="a" * 129), MalformedMessage, ErrorCode.BAD_MESSAGE)
    frame = build_frame({"v": 1, "kind": "hello", "id": 1, "client": "c" * 129, "roles": [],
                         "credentials": {}})
    assert_bad(frame, MalformedMessage, ErrorCode.BAD_MESSAGE)
    pointer = msgpack.ExtType(ExtCode.POINTER, msgpack.packb(["n" * 129, 1]))
    assert_bad(command_frame([pointer]), MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_container_over_max_len_is_bad_message() -> None:
    """An array of more than MAX_CONTAINER_LEN elements is BAD_MESSAGE."""
    assert_bad(command_frame([None] * (MAX_CONTAINER_LEN + 1)), MalformedMessage,
               ErrorCode.BAD_MESSAGE)


def test_ext_over_4096_bytes_is_bad_message() -> None:
    """An ext value with more than 4096 bytes of data is BAD_MESSAGE."""
    assert_bad(command_frame([msgpack.ExtType(ExtCode.DTYPE, b"a" * 4097)]), MalformedMessage,
               ErrorCode.BAD_MESSAGE)


# --- map keys and request ids ----------------------------------------------------


def test_bytes_map_keys_are_bad_message() -> None:
    """Map keys in kwargs must be str: a bin key is BAD_MESSAGE."""
    assert_bad(command_frame([], kwargs={b"alpha": 2}), MalformedMessage, ErrorCode.BAD_MESSAGE)


def test_bad_tensor_error_carries_the_request_id() -> None:
    """A put with a disallowed dtype is answered with its own request id."""
    exc = decode_error(put_frame(tensor_ext("complex64", [1], 0, 8), bytes(8), request_id=2))
    assert exc.code is ErrorCode.BAD_TENSOR
    assert exc.request_id == 2


# --- encoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, 1 + 2j, 2**64, -(2**63) - 1, torch.complex64, torch.quint8,
     torch.zeros(2, dtype=torch.complex64), type, PointerRef, torch.device("cpu")],
    ids=["object", "set", "complex", "int-2^64", "int-below-i64", "dtype-complex", "dtype-quint8",
         "tensor-complex", "type", "class", "device"],
)
def test_encoding_unsupported_value_raises_local_protocol_error(value: object) -> None:
    """Encoding a value outside the grammar raises LocalProtocolError (no wire code: our mistake)."""
    message = CommandRequest(RequestId(1), "add", None, (value,), {}, (ObjectId(2),))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError) as caught:
        encode_message(message)
    assert caught.value.code is None and caught.value.request_id == 1


def test_encoding_a_complex_tensor_put_is_a_local_error() -> None:
    """A put of a complex tensor raises LocalProtocolError on encode, carrying the put's id."""
    with pytest.raises(LocalProtocolError) as caught:
        encode_message(PutRequest(RequestId(9), ObjectId(2), torch.zeros(2, dtype=torch.complex64)))
    assert caught.value.request_id == 9 and caught.value.code is None


def test_encoding_a_sparse_tensor_raises_local_protocol_error() -> None:
    """A sparse tensor cannot be sent and raises LocalProtocolError, not a RuntimeError."""
    with pytest.raises(LocalProtocolError):
        encode_message(PutRequest(RequestId(1), ObjectId(2), torch.zeros(3).to_sparse()))


def test_encoding_a_tensor_requiring_grad_sends_its_data() -> None:
    """A tensor with autograd history is sent by value (detached)."""
    tensor = torch.ones(3, requires_grad=True) * 2
    decoded = round_trip(PutRequest(RequestId(1), ObjectId(2), tensor))
    assert isinstance(decoded, PutRequest)
    assert torch.equal(decoded.value, torch.full((3,), 2.0)) and not decoded.value.requires_grad
