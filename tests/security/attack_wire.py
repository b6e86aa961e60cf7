"""A raw attacker's toolkit: websockets plus our codec, nothing of the node client.

Every attack in ``tests/security`` speaks to real node processes through
these helpers, so the frames are exactly what an attacker on the network
could send: hand-made msgpack where the attack needs a frame our encoder
would refuse to build, our encoder where a well-formed message is enough.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import secrets
import ssl
import struct
from pathlib import Path
from typing import Any, Iterable, Sequence

import msgpack
import torch
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from peer.security.identity import Identity
from node.server.users import UserDirectory
from peer.security.proof import node_credentials
from peer.security.tokens import parse_user_token, user_credentials
from protocol.codec import decode_message, encode_message_bytes
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import ErrorReply, HelloRequest, Message, SyncReply, SyncRequest
from tests.support import NETWORK_KEY, NodeProcess, admit

SYNC_ID = 999_999
"""Request id of the barrier that ends an exchange."""


def tls(cafile: Path) -> ssl.SSLContext:
    """Verify a node against its own self-signed certificate."""
    return ssl.create_default_context(cafile=str(cafile))


def frame(body: dict[str, Any], tail: bytes = b"") -> bytes:
    """A hand-made frame: u32 header, msgpack body, padding to 8, payload region."""
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    head = struct.pack("<I", len(packed)) + packed
    return head + bytes(-len(head) % 8) + tail


def envelope(kind: str, request_id: int, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "kind": kind, "id": request_id, **fields}


def tensor_ext(dtype: str, shape: Sequence[int], offset: int, nbytes: int) -> msgpack.ExtType:
    return msgpack.ExtType(1, msgpack.packb([dtype, list(shape), offset, nbytes]))


def pointer_ext(node_id: str, object_id: int) -> msgpack.ExtType:
    return msgpack.ExtType(2, msgpack.packb([node_id, object_id]))


def dtype_ext(name: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(5, name)


def anonymous(secret: bytes | None = None) -> dict[str, Any]:
    return {"scheme": "anonymous", "secret": secret or secrets.token_bytes(32)}


def admit_user(*procs: NodeProcess) -> str:
    """A new user admitted on every one of ``procs`` (same token everywhere); its token."""
    token = admit(procs[0].state_dir, f"u{secrets.token_hex(6)}")
    for proc in procs[1:]:
        UserDirectory(proc.state_dir).add(parse_user_token(token))
    return token


def as_user(token: str, proc: NodeProcess, client: str = "attacker") -> bytes:
    """A hello proving ``token`` to ``proc``."""
    return hello(user_credentials(parse_user_token(token), proc.fingerprint), client)


def hello(credentials: dict[str, Any], client: str = "attacker") -> bytes:
    return encode_message_bytes(HelloRequest(1, PROTOCOL_VERSION, client, (), credentials))


def node_hello(identity: Identity, node_id: str, server_fingerprint: str | None, **kw: Any) -> bytes:
    """A node's hello: a fresh proof that ``node_id`` holds ``identity``'s key, bound to a server.

    It proves membership of the tests' network unless ``network`` says otherwise.
    """
    kw.setdefault("network", NETWORK_KEY)
    return hello(node_credentials(identity, node_id, server_fingerprint, **kw), client=node_id)


def new_id() -> int:
    return secrets.randbits(63) + 1


class Raw:
    """One raw WebSocket to a node; ``exchange`` sends frames and collects the answers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.greeting: Any = None
        """The answer to the hello (HelloReply, or an ErrorReply when refused)."""

    @classmethod
    async def open(
        cls,
        proc: NodeProcess,
        hello_frame: bytes | None = None,
        *,
        say_hello: bool = True,
    ) -> Raw:
        ws = await connect(
            proc.url, ssl=tls(proc.cafile), compression=None, max_size=2**26, open_timeout=10
        )
        raw = cls(ws)
        if say_hello:
            # By default every connection is a user of its own, as a fresh attacker would be.
            greeting = hello_frame if hello_frame is not None else as_user(admit_user(proc), proc)
            await ws.send(greeting)
            raw.greeting = decode_message(await asyncio.wait_for(ws.recv(), 10))
        return raw

    async def exchange(self, frames: Iterable[bytes | Message]) -> list[Any]:
        """Send ``frames`` then a sync; return every reply up to the sync's (or the close)."""
        for item in frames:
            await self.ws.send(item if isinstance(item, bytes) else encode_message_bytes(item))
        await self.ws.send(encode_message_bytes(SyncRequest(SYNC_ID)))
        replies: list[Any] = []
        try:
            while True:
                reply = decode_message(await asyncio.wait_for(self.ws.recv(), 15))
                if isinstance(reply, SyncReply) and reply.id == SYNC_ID:
                    break
                replies.append(reply)
        except ConnectionClosed as closed:
            replies.append(closed)
        return replies

    async def request(self, message: Message | bytes) -> Any:
        """Send one request that is always answered; return the answer (or the close)."""
        await self.ws.send(message if isinstance(message, bytes) else encode_message_bytes(message))
        try:
            return decode_message(await asyncio.wait_for(self.ws.recv(), 15))
        except ConnectionClosed as closed:
            return closed

    async def close(self) -> None:
        await self.ws.close()


async def refused_hello(proc: NodeProcess, hello_frame: bytes) -> tuple[Any, int | None]:
    """Say ``hello_frame`` on a fresh connection; the answer and the close code that follows."""
    raw = await Raw.open(proc, say_hello=False)
    reply = await raw.request(hello_frame)
    code: int | None = None
    try:
        await asyncio.wait_for(raw.ws.recv(), 10)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
    await raw.close()
    return reply, code


def codes(replies: Sequence[Any]) -> list[str]:
    return [r.code for r in replies if isinstance(r, ErrorReply)]


def errors(replies: Sequence[Any]) -> list[ErrorReply]:
    return [r for r in replies if isinstance(r, ErrorReply)]


class Detonator:
    """Would create ``marker`` if anything ever unpickled it (``os.system('touch ...')``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def pickle_bomb(marker: Path) -> bytes:
    """A real pickle whose loading runs ``os.system`` to create ``marker``."""
    data = pickle.dumps(Detonator(marker))
    assert b"system" in data
    return data


def torch_archive_bomb(marker: Path) -> bytes:
    """A real ``torch.save`` zip archive whose ``torch.load(weights_only=False)`` creates ``marker``."""
    import io

    buffer = io.BytesIO()
    torch.save({"weights": torch.ones(2), "payload": Detonator(marker)}, buffer)
    data = buffer.getvalue()
    assert data[:4] == b"PK\x03\x04"
    return data
