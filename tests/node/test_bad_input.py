"""A node fed garbage answers with typed errors, keeps serving, and loses nothing."""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
from typing import Any

import msgpack
import pytest
import torch
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import node
from peer.security.tokens import parse_user_token, user_credentials
from tests.support import USER_TOKEN, NodeProcess
from protocol.codec import decode_message, encode_message_bytes
from protocol.messages import ErrorReply, HelloRequest
from protocol.limits import PROTOCOL_VERSION


def _ssl(proc: NodeProcess) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(proc.cafile))
    return context


def _frame(body: dict[str, Any], tail: bytes = b"") -> bytes:
    packed = msgpack.packb(body, use_bin_type=True)
    head = struct.pack("<I", len(packed)) + packed
    return head + bytes(-len(head) % 8) + tail


def _hello(proc: NodeProcess) -> bytes:
    credentials = user_credentials(parse_user_token(USER_TOKEN), proc.fingerprint)
    return encode_message_bytes(HelloRequest(1, PROTOCOL_VERSION, "attacker", (), credentials))


async def _exchange(proc: NodeProcess, frames: list[bytes | str]) -> list[Any]:
    """Open a raw WebSocket, say hello, send frames, collect replies until quiet."""
    replies: list[Any] = []
    async with ws_connect(proc.url, ssl=_ssl(proc), compression=None, max_size=2**24) as ws:
        await ws.send(_hello(proc))
        replies.append(decode_message(await ws.recv()))
        for frame in frames:
            await ws.send(frame)
        await ws.send(_frame({"v": PROTOCOL_VERSION, "kind": "sync", "id": 999}))
        try:
            while True:
                reply = decode_message(await asyncio.wait_for(ws.recv(), 10))
                replies.append(reply)
                if reply.id == 999:
                    break
        except ConnectionClosed as closed:
            replies.append(closed)
    return replies


@pytest.fixture
def victim(shared_node: NodeProcess) -> Any:
    """A well-behaved client with a stored object, checked intact after each attack."""
    remote = node.connect(shared_node.url, cafile=shared_node.cafile)
    kept = remote.send(torch.arange(6.0))
    yield shared_node
    assert torch.equal(kept.get(), torch.arange(6.0)), "a stored object was lost"
    assert torch.equal((kept * 2).get(), torch.arange(6.0) * 2), "the node stopped computing"
    remote.close()


def _codes(replies: list[Any]) -> list[str]:
    return [r.code for r in replies if isinstance(r, ErrorReply)]


def test_random_bytes_get_bad_message(victim: NodeProcess) -> None:
    """Random binary frames each get a BAD_MESSAGE error with request id 0."""
    rng = random.Random(7)
    frames: list[bytes | str] = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))) for _ in range(50)]
    replies = asyncio.run(_exchange(victim, frames))
    errors = [r for r in replies if isinstance(r, ErrorReply)]
    assert len(errors) == 50
    assert {e.code for e in errors} <= {"BAD_MESSAGE"}


def test_truncated_msgpack(victim: NodeProcess) -> None:
    """A frame whose msgpack body is cut short is BAD_MESSAGE."""
    good = _frame({"v": PROTOCOL_VERSION, "kind": "list", "id": 5})
    replies = asyncio.run(_exchange(victim, [good[:-3] + struct.pack("<I", 0)[:0]]))
    assert _codes(replies) == ["BAD_MESSAGE"]


def test_unknown_kind_is_answered_with_its_request_id(victim: NodeProcess) -> None:
    """An unknown kind gets UNKNOWN_KIND correlated to the request id."""
    replies = asyncio.run(_exchange(victim, [_frame({"v": PROTOCOL_VERSION, "kind": "rm -rf", "id": 41})]))
    errors = [r for r in replies if isinstance(r, ErrorReply)]
    assert [(e.code, e.id) for e in errors] == [("UNKNOWN_KIND", 41)]


def test_tensor_header_claiming_two_gib(victim: NodeProcess) -> None:
    """A tensor claiming 2 GiB backed by 8 bytes is refused without allocating."""
    ext = msgpack.ExtType(1, msgpack.packb(["float32", [2**29], 0, 2**31]))
    frame = _frame({"v": PROTOCOL_VERSION, "kind": "put", "id": 3, "object_id": 9, "value": ext}, b"\0" * 8)
    replies = asyncio.run(_exchange(victim, [frame]))
    assert _codes(replies) in (["BAD_MESSAGE"], ["BAD_TENSOR"], ["TOO_LARGE"])


@pytest.mark.parametrize(
    "op", ["__class__", "__reduce__", "__getattribute__", "os.system", "__subclasses__", "load", "eval"]
)
def test_dangerous_op_names_are_unsupported(victim: NodeProcess, op: str) -> None:
    """Op names that owned PySyft 0.2 are refused with UNSUPPORTED_OP."""
    object_id = random.getrandbits(63)
    put = encode_message_bytes_put(object_id)
    command = _frame({
        "v": PROTOCOL_VERSION, "kind": "command", "id": 12, "op": op,
        "target": msgpack.ExtType(2, msgpack.packb(["shared", object_id])), "args": [],
        "kwargs": {}, "results": [random.getrandbits(63)],
    })
    replies = asyncio.run(_exchange(victim, [put, command]))
    assert _codes(replies) == ["UNSUPPORTED_OP"]


def encode_message_bytes_put(object_id: int) -> bytes:
    from protocol.messages import PutRequest

    return encode_message_bytes(PutRequest(10, object_id, torch.ones(2)))


def test_pointer_to_missing_object(victim: NodeProcess) -> None:
    """A command naming an object that does not exist gets NOT_FOUND."""
    command = _frame({
        "v": PROTOCOL_VERSION, "kind": "command", "id": 13, "op": "neg",
        "target": msgpack.ExtType(2, msgpack.packb(["shared", 424242])), "args": [], "kwargs": {},
        "results": [1],
    })
    replies = asyncio.run(_exchange(victim, [command]))
    assert _codes(replies) == ["NOT_FOUND"]


def test_text_frame_closes_with_1003(victim: NodeProcess) -> None:
    """A text frame closes that connection with code 1003 (unsupported data)."""
    replies = asyncio.run(_exchange(victim, ["hello?"]))
    closed = [r for r in replies if isinstance(r, ConnectionClosed)]
    assert closed and closed[0].rcvd is not None and closed[0].rcvd.code == 1003


def test_request_before_hello_is_unauthenticated(victim: NodeProcess) -> None:
    """Anything before hello gets UNAUTHENTICATED and the connection closes (1008)."""

    async def run() -> tuple[Any, Any]:
        async with ws_connect(victim.url, ssl=_ssl(victim), compression=None) as ws:
            await ws.send(_frame({"v": PROTOCOL_VERSION, "kind": "list", "id": 2}))
            reply = decode_message(await ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return reply, closed.value

    reply, closed = asyncio.run(run())
    assert isinstance(reply, ErrorReply) and reply.code == "UNAUTHENTICATED"
    assert closed.rcvd is not None and closed.rcvd.code == 1008


def test_version_mismatch_is_refused(victim: NodeProcess) -> None:
    """A hello in another protocol version gets VERSION_MISMATCH, then close 1002."""

    async def run() -> Any:
        async with ws_connect(victim.url, ssl=_ssl(victim), compression=None) as ws:
            await ws.send(_frame({"v": 99, "kind": "hello", "id": 1, "client": "x", "roles": [], "credentials": {}}))
            return decode_message(await ws.recv())

    reply = asyncio.run(run())
    assert isinstance(reply, ErrorReply) and reply.code == "VERSION_MISMATCH"


def test_plaintext_client_against_tls_node(victim: NodeProcess) -> None:
    """A ws:// client cannot talk to a TLS node; the node keeps serving."""

    async def run() -> None:
        async with ws_connect(victim.url.replace("wss://", "ws://"), open_timeout=5):
            pass

    with pytest.raises(Exception):
        asyncio.run(run())


def test_oversized_frame_closes_with_1009(spawn_node) -> None:  # type: ignore[no-untyped-def]
    """A frame above the node's limit closes that connection with 1009; the node survives."""
    proc = spawn_node("small", "--max-message-mib", "1")

    async def run() -> Any:
        async with ws_connect(proc.url, ssl=_ssl(proc), compression=None) as ws:
            await ws.send(_hello(proc))
            await ws.recv()
            await ws.send(b"\0" * (2 * 1024 * 1024))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return closed.value

    closed = asyncio.run(run())
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    with node.connect(proc.url, cafile=proc.cafile) as remote:
        assert torch.equal(remote.send(torch.ones(1)).get(), torch.ones(1))
        with pytest.raises(node.MessageTooLarge):
            remote.send(torch.zeros(1024 * 1024))
