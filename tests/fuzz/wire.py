"""Feeding fuzz frames to a live node over raw TLS WebSockets, reading replies as they come.

Frames go out in batches, each followed by a ``sync`` whose reply must come
back within a timeout: a missing ``sync_reply`` is a hang.  A frame the node
is specified to close the connection for (a second ``hello``, another
protocol version) is sent instead as the first frame of a fresh connection,
which exercises the handshake with fuzzed credentials; any other close is
recorded and the feeder reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from peer.security.identity import fingerprint_of
from peer.security.tokens import parse_user_token, user_credentials
from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import ProtocolError, VersionMismatch
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    DeleteRequest, ErrorReply, HelloReply, HelloRequest, ListReply, ListRequest, SyncReply,
    SyncRequest,
)

__all__ = ["Target", "FeedReport", "feed", "handshake", "open_link", "recv", "closes_connection", "cleanup", "isolate"]

SYNC_BASE = 0xF022 << 48
UNSENDABLE = ("a value of type", "cannot encode")
"""How a node's error reply starts when the real error reply could not be encoded."""
_sync_ids = itertools.count(SYNC_BASE)


@dataclass(frozen=True)
class Target:
    """Where the node listens, how to trust it, and the fuzzing principal's token.

    The fuzzer must be a principal of its own: its random deletes must not
    reach the objects the health check keeps under the tests' user.
    """

    url: str
    cafile: Path
    token: str
    timeout: float = 10.0

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def fingerprint(self) -> str:
        return fingerprint_of(ssl.PEM_cert_to_DER_cert(self.cafile.read_text()))


@dataclass
class FeedReport:
    """What the node did with the frames it was fed."""

    frames: int = 0
    replies: int = 0
    batches: int = 0
    handshakes: int = 0
    reconnects: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    closes: collections.Counter[str] = field(default_factory=collections.Counter)
    hangs: list[list[bytes]] = field(default_factory=list)
    internal: list[list[bytes]] = field(default_factory=list)
    bad_replies: list[bytes] = field(default_factory=list)
    unexpected_closes: list[list[bytes]] = field(default_factory=list)
    unreportable: list[list[bytes]] = field(default_factory=list)

    def merge(self, other: FeedReport) -> None:
        for name in ("frames", "replies", "batches", "handshakes", "reconnects"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.codes.update(other.codes)
        self.closes.update(other.closes)
        for name in ("hangs", "internal", "bad_replies", "unexpected_closes", "unreportable"):
            getattr(self, name).extend(getattr(other, name))


def closes_connection(frame: bytes) -> bool:
    """Whether the protocol says an open connection closes on this frame (hello, other version)."""
    try:
        return isinstance(decode_message(frame), HelloRequest)
    except VersionMismatch:
        return True
    except ProtocolError:
        return False


async def recv(ws: ClientConnection, timeout: float) -> bytes:
    """The next message from the node, as bytes, within ``timeout`` seconds."""
    data: str | bytes = await asyncio.wait_for(ws.recv(), timeout)
    return data.encode() if isinstance(data, str) else data


def _hello(target: Target) -> bytes:
    credentials = user_credentials(parse_user_token(target.token), target.fingerprint())
    return encode_message_bytes(HelloRequest(1, PROTOCOL_VERSION, "fuzzer", ("client",), credentials))  # type: ignore[arg-type]


async def open_link(target: Target, hello: bool = True) -> ClientConnection:
    """A raw connection to the node, opened with the fuzzing principal's hello unless told not to."""
    ws = await ws_connect(target.url, ssl=target.ssl(), compression=None, max_size=2**28,
                          open_timeout=target.timeout, ping_interval=None)
    if hello:
        await ws.send(_hello(target))
        reply = decode_message(await recv(ws, target.timeout))
        assert isinstance(reply, HelloReply), f"hello refused: {reply!r}"
    return ws


def _note(report: FeedReport, data: bytes, batch: list[bytes]) -> Any:
    """Count one reply; remember the batch if the node answered INTERNAL or sent garbage."""
    report.replies += 1
    try:
        reply = decode_message(data)
    except ProtocolError:
        report.bad_replies.append(data)
        return None
    if isinstance(reply, ErrorReply):
        report.codes[reply.code] += 1
        if reply.code == "INTERNAL":
            report.internal.append(list(batch))
        elif reply.code == "BAD_MESSAGE" and reply.message.startswith(UNSENDABLE):
            report.unreportable.append(list(batch))  # the node could not encode the real error
    else:
        report.codes[reply.KIND.value] += 1
    return reply


async def _flush(ws: ClientConnection, target: Target, batch: list[bytes], report: FeedReport) -> ClientConnection:
    """Send ``batch`` and a sync; read until its sync_reply. Returns a usable connection."""
    sync_id = next(_sync_ids)
    report.batches += 1
    report.frames += len(batch)
    try:
        for frame in batch:
            await ws.send(frame)
        await ws.send(encode_message_bytes(SyncRequest(sync_id)))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.timeout
        while True:
            data = await recv(ws, max(0.0, deadline - loop.time()))
            reply = _note(report, data, batch)
            if isinstance(reply, SyncReply) and reply.id == sync_id:
                return ws
    except (asyncio.TimeoutError, TimeoutError):
        report.hangs.append(list(batch))
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        report.closes[str(code)] += 1
        report.unexpected_closes.append(list(batch))
    await ws.close()
    report.reconnects += 1
    return await open_link(target)


async def handshake(target: Target, frame: bytes, report: FeedReport) -> None:
    """Send ``frame`` as the first frame of a fresh connection and read the answer."""
    report.handshakes += 1
    report.frames += 1
    ws = await open_link(target, hello=False)
    try:
        await ws.send(frame)
        _note(report, await recv(ws, target.timeout), [frame])
    except (asyncio.TimeoutError, TimeoutError):
        report.hangs.append([frame])
    except ConnectionClosed as closed:
        report.closes[str(closed.rcvd.code if closed.rcvd is not None else None)] += 1
    finally:
        await ws.close()


async def feed(target: Target, frames: list[bytes], batch: int = 25) -> FeedReport:
    """Feed ``frames`` over one connection (reconnecting as needed) and report."""
    report = FeedReport()
    ws = await open_link(target)
    pending: list[bytes] = []
    for frame in frames:
        if closes_connection(frame):
            await handshake(target, frame, report)
            continue
        pending.append(frame)
        if len(pending) >= batch:
            ws = await _flush(ws, target, pending, report)
            pending = []
    if pending:
        ws = await _flush(ws, target, pending, report)
    await ws.close()
    return report


async def isolate(target: Target, batch: list[bytes], limit: int = 3) -> list[bytes]:
    """The frames of ``batch`` that hang, get INTERNAL or close the connection when sent alone."""
    culprits: list[bytes] = []
    for frame in batch:
        report = FeedReport()
        if closes_connection(frame):
            await handshake(target, frame, report)
        else:
            ws = await _flush(await open_link(target), target, [frame], report)
            await ws.close()
        if report.hangs or report.internal or report.unexpected_closes or report.bad_replies:
            culprits.append(frame)
            if len(culprits) >= limit:
                break
    return culprits


async def cleanup(target: Target) -> int:
    """Delete every object the fuzzing principal stored; returns how many there were."""
    ws = await open_link(target)
    try:
        await ws.send(encode_message_bytes(ListRequest(2)))  # type: ignore[arg-type]
        listing = decode_message(await recv(ws, target.timeout))
        assert isinstance(listing, ListReply), repr(listing)
        ids = [info.object_id for info in listing.objects]
        for start in range(0, len(ids), 10_000):
            await ws.send(encode_message_bytes(DeleteRequest(3, tuple(ids[start : start + 10_000]))))  # type: ignore[arg-type]
        await ws.send(encode_message_bytes(SyncRequest(4)))  # type: ignore[arg-type]
        while not isinstance(decode_message(await recv(ws, target.timeout)), SyncReply):
            pass
        return len(ids)
    finally:
        await ws.close()
