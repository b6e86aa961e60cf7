"""Pickle payloads, torch archives and fake dtypes sent to a node: never unpickled, never evaluated.

Every payload here is armed: loading it with ``pickle.loads`` or
``torch.load(weights_only=False)`` would run ``os.system('touch <marker>')``
in the node process.  The marker file lives in the test's ``tmp_path`` and
must not exist after the node has answered (a ``sync`` barrier proves it has
processed everything).  The payloads either get a typed error or come back
byte for byte as the plain data they were sent as.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
import torch

from peer.security.tokens import parse_user_token, user_credentials
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    ErrorReply,
    CommandRequest,
    GetReply,
    GetRequest,
    PutChunkRequest,
    PutRequest,
)
from protocol.values import PointerRef
from tests.security.attack_wire import (
    Raw,
    anonymous,
    codes,
    dtype_ext,
    envelope,
    frame,
    hello,
    new_id,
    pickle_bomb,
    pointer_ext,
    tensor_ext,
    torch_archive_bomb,
)
from tests.security.conftest import Bystander, bystander_fixture
from tests.support import USER_TOKEN, NodeProcess

bystander = bystander_fixture("shared_node")


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The file an unpickled payload would create; asserted absent after the attack."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the node unpickled an attacker's payload (os.system ran)"


@pytest.fixture
def guard(bystander: Bystander, marker: Path) -> Iterator[NodeProcess]:
    """After each attack, the node still serves a legitimate client correctly."""
    yield bystander.proc
    bystander.check()


@pytest.fixture(params=["pickle", "torch.save"])
def bomb(request: pytest.FixtureRequest, marker: Path) -> bytes:
    make = pickle_bomb if request.param == "pickle" else torch_archive_bomb
    return make(marker)


def _exchange(proc: NodeProcess, frames: list[Any]) -> list[Any]:
    async def run() -> list[Any]:
        raw = await Raw.open(proc)
        try:
            return await raw.exchange(frames)
        finally:
            await raw.close()

    return asyncio.run(run())


def test_bomb_as_whole_frame_is_bad_message(guard: NodeProcess, bomb: bytes, marker: Path) -> None:
    """A pickle / torch.save archive sent as the whole frame (also behind a valid header) -> BAD_MESSAGE."""
    framed = struct.pack("<I", len(bomb)) + bomb
    replies = _exchange(guard, [bomb, framed])
    assert codes(replies) == ["BAD_MESSAGE", "BAD_MESSAGE"]
    assert not marker.exists()


def test_bomb_as_bytes_argument_is_plain_bytes(guard: NodeProcess, bomb: bytes, marker: Path) -> None:
    """A pickle / archive as msgpack bin in command args and kwargs -> OP_FAILED (bytes are not a tensor)."""
    own = new_id()
    target = PointerRef(guard.node_id, own)
    replies = _exchange(guard, [
        PutRequest(2, own, torch.ones(2)),
        CommandRequest(3, "add", target, (bomb,), {}, (new_id(),)),
        CommandRequest(4, "add", target, (target,), {"alpha": bomb}, (new_id(),)),
        CommandRequest(5, "cat", None, ([target, bomb],), {}, (new_id(),)),
        CommandRequest(6, "getitem", target, (bomb,), {}, (new_id(),)),
    ])
    assert codes(replies) == ["OP_FAILED"] * 4
    assert not marker.exists()


def test_bomb_where_a_tensor_is_required_is_bad_message(guard: NodeProcess, bomb: bytes, marker: Path) -> None:
    """A pickle / archive as msgpack bin in put.value and put_chunk.data -> BAD_MESSAGE."""
    put = frame(envelope("put", 3, object_id=new_id(), value=bomb))
    chunk = frame(envelope(
        "put_chunk", 4, object_id=new_id(), dtype="uint8", shape=[len(bomb)], offset=0, data=bomb, last=True,
    ))
    assert codes(_exchange(guard, [put, chunk])) == ["BAD_MESSAGE", "BAD_MESSAGE"]
    assert not marker.exists()


def test_bomb_as_uint8_tensor_is_stored_as_plain_data(guard: NodeProcess, bomb: bytes, marker: Path) -> None:
    """A pickle / archive as a uint8 tensor payload (put, put_chunk) -> stored and returned byte for byte, never loaded."""
    as_tensor = torch.frombuffer(bytearray(bomb), dtype=torch.uint8)
    whole, chunked, derived = new_id(), new_id(), new_id()
    half = len(bomb) // 2

    async def run() -> tuple[list[Any], list[Any]]:
        raw = await Raw.open(guard)
        replies = await raw.exchange([
            PutRequest(2, whole, as_tensor),
            PutChunkRequest(3, chunked, "uint8", (len(bomb),), 0, as_tensor[:half], False),
            PutChunkRequest(4, chunked, "uint8", (len(bomb),), half, as_tensor[half:], True),
            CommandRequest(5, "add", PointerRef(guard.node_id, whole), (0,), {}, (derived,)),
        ])
        got = [await raw.request(GetRequest(10 + i, oid)) for i, oid in enumerate((whole, chunked, derived))]
        await raw.close()
        return replies, got

    replies, got = asyncio.run(run())
    assert codes(replies) == []
    for reply in got:
        assert isinstance(reply, GetReply) and reply.value.dtype == torch.uint8
        assert bytes(reply.value.numpy().tobytes()) == bomb
    assert not marker.exists()


@pytest.mark.parametrize("field", ["user", "mac", "nonce", "secret"])
def test_bomb_in_hello_credentials_is_refused_unopened(
    guard: NodeProcess, bomb: bytes, marker: Path, field: str
) -> None:
    """A pickle / archive in any credential field (token or anonymous) -> UNAUTHENTICATED, never unpickled."""
    credentials = (
        dict(anonymous(), secret=bomb) if field == "secret"
        else dict(user_credentials(parse_user_token(USER_TOKEN), guard.fingerprint), **{field: bomb})
    )

    async def run() -> Any:
        raw = await Raw.open(guard, say_hello=False)
        reply = await raw.request(hello(credentials))
        await raw.close()
        return reply

    reply = asyncio.run(run())
    assert isinstance(reply, ErrorReply) and reply.code == "UNAUTHENTICATED", reply
    assert not marker.exists()


def _dtype_ext_command(proc: NodeProcess, own: int, name: bytes) -> bytes:
    return frame(envelope(
        "command", 3, op="to", target=pointer_ext(proc.node_id, own), args=[dtype_ext(name)],
        kwargs={}, results=[new_id()],
    ))


@pytest.mark.parametrize(
    "name",
    [b"object", b"torch.float64; import os", b"torch.float64", b"__class__", b"complex64", b"qint8", b"float64 "],
    ids=repr,
)
def test_fake_dtype_ext_is_bad_tensor(guard: NodeProcess, name: bytes) -> None:
    """A dtype ext naming object / 'torch.float64; import os' / a non-allowlisted type -> BAD_TENSOR."""
    own = new_id()
    replies = _exchange(guard, [
        PutRequest(2, own, torch.ones(2)),
        _dtype_ext_command(guard, own, name),
        _dtype_ext_command(guard, own, b"float64"),  # control: the real name works
    ])
    assert codes(replies) == ["BAD_TENSOR"]


@pytest.mark.parametrize("name", ["object", "torch.float64; import os", "O", "<f8", "float64"], ids=repr)
def test_fake_dtype_in_tensor_header_is_bad_tensor(guard: NodeProcess, name: str) -> None:
    """A tensor ext or put_chunk naming a dtype outside the allowlist (numpy 'O', '<f8', ...) -> BAD_TENSOR."""
    put = frame(envelope("put", 3, object_id=new_id(), value=tensor_ext(name, [1], 0, 8)), b"\0" * 8)
    chunk = frame(envelope(
        "put_chunk", 4, object_id=new_id(), dtype=name, shape=[1], offset=0,
        data=tensor_ext("uint8", [8], 0, 8), last=True,
    ), b"\0" * 8)
    expected = [] if name == "float64" else ["BAD_TENSOR", "BAD_TENSOR"]
    assert codes(_exchange(guard, [put, chunk])) == expected


def test_unknown_ext_types_are_bad_message(guard: NodeProcess) -> None:
    """Ext codes outside the grammar (0, 6, 99, msgpack timestamp -1) carrying a pickle -> BAD_MESSAGE."""
    frames = [
        frame(envelope("command", 10 + code, op="neg", target=None, kwargs={}, results=[new_id()],
                       args=[msgpack.ExtType(code, b"\x80\x04\x95cos\nsystem\n")]))
        for code in (0, 6, 99)
    ]
    stamp = msgpack.packb({"v": PROTOCOL_VERSION, "kind": "list", "id": 20, "x": msgpack.Timestamp(1, 0)})
    frames.append(struct.pack("<I", len(stamp)) + stamp)
    assert codes(_exchange(guard, frames)) == ["BAD_MESSAGE"] * 4


def test_the_bombs_are_armed(tmp_path: Path) -> None:
    """Control (local, no node): loading the payloads really runs os.system, so the marker checks mean something."""
    import pickle

    for name, make in (("pickle", pickle_bomb), ("archive", torch_archive_bomb)):
        target = tmp_path / name
        data = make(target)
        if name == "pickle":
            pickle.loads(data)
        else:
            import io

            torch.load(io.BytesIO(data), weights_only=False)
        assert target.exists()
