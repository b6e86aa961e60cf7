"""Clients of the baseline servers, driven from a script like Tessera's sync client.

Each owns an event loop in a thread, as ``node.connect`` does, so both sides
of every comparison pay the same thread hand-off.  Trust is the same pinned
fingerprint Tessera uses.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any, Coroutine, TypeVar

from peer.transport import loops
from peer.transport.tls import client_ssl_context
from peer.security.trust import TrustPolicy

__all__ = ["RawWebSocket", "RawTls", "FRAGMENT"]

FRAGMENT = 1 << 20
T = TypeVar("T")
_LENGTH = struct.Struct("<Q")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = loops.new_event_loop()  # the same kind of loop Tessera's client uses
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class RawWebSocket(_LoopThread):
    """Plain ``websockets`` client: echo, pipelined echo, bulk upload and download."""

    def __init__(self, url: str, fingerprint: str, path: str) -> None:
        super().__init__()
        self.context = client_ssl_context(TrustPolicy(fingerprint=fingerprint))
        self.ws: Any = self.run(self._connect(url + path))

    async def _connect(self, url: str) -> Any:
        from websockets.asyncio.client import connect

        return await connect(url, ssl=self.context, compression=None, max_size=None, proxy=None)

    async def _echo(self, payload: bytes) -> Any:
        await self.ws.send(payload)
        return await self.ws.recv()

    def echo(self, payload: bytes) -> None:
        self.run(self._echo(payload))

    async def _pipelined(self, payload: bytes, count: int) -> None:
        async def send_all() -> None:
            for _ in range(count):
                await self.ws.send(payload)

        sender = asyncio.create_task(send_all())
        for _ in range(count):
            await self.ws.recv()
        await sender

    def pipelined(self, payload: bytes, count: int) -> None:
        self.run(self._pipelined(payload, count))

    async def _upload(self, data: memoryview) -> None:
        await self.ws.send([data[i : i + FRAGMENT] for i in range(0, data.nbytes, FRAGMENT)])
        await self.ws.recv()

    def upload(self, data: memoryview) -> None:
        """Send the bytes as 1 MiB fragments; the server stores them and answers OK."""
        self.run(self._upload(data))

    async def _download(self, into: memoryview) -> int:
        await self.ws.send("GET")
        position = 0
        async for fragment in self.ws.recv_streaming():
            into[position : position + len(fragment)] = fragment
            position += len(fragment)
        return position

    def download(self, into: memoryview) -> int:
        """Fetch the stored bytes into a preallocated buffer."""
        return self.run(self._download(into))

    def close(self) -> None:
        self.run(self.ws.close())
        self.stop()


class RawTls(_LoopThread):
    """Plain asyncio TLS streams: the ceiling under any WebSocket framing."""

    def __init__(self, host: str, port: int, fingerprint: str) -> None:
        super().__init__()
        context = client_ssl_context(TrustPolicy(fingerprint=fingerprint))
        self.reader, self.writer = self.run(
            asyncio.open_connection(host, port, ssl=context, limit=FRAGMENT * 4)
        )

    async def _upload(self, data: memoryview) -> None:
        self.writer.write(_LENGTH.pack(data.nbytes))
        for start in range(0, data.nbytes, FRAGMENT):
            self.writer.write(data[start : start + FRAGMENT])
            await self.writer.drain()
        await self.reader.readexactly(2)

    def upload(self, data: memoryview) -> None:
        self.run(self._upload(data))

    async def _download(self, into: memoryview) -> int:
        self.writer.write(_LENGTH.pack(0))
        await self.writer.drain()
        (length,) = _LENGTH.unpack(await self.reader.readexactly(_LENGTH.size))
        position = 0
        while position < length:
            chunk = await self.reader.read(min(FRAGMENT, length - position))
            into[position : position + len(chunk)] = chunk
            position += len(chunk)
        return position

    def download(self, into: memoryview) -> int:
        return self.run(self._download(into))

    def close(self) -> None:
        self.writer.close()
        self.stop()
