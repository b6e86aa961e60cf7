"""The baselines: plain ``websockets`` and plain TLS streams, same certificates.

Run as its own process by :mod:`benchmarks.transport`::

    python -m benchmarks.raw_servers STATE_DIR

It prints one line per server (``<name> listening on URL fingerprint FP``),
then serves until SIGTERM.  Both servers use our TLS server context, so the
cipher suites and certificates match the node's exactly.

WebSocket paths:

- ``/echo``: echoes each message (small-message round trips and pipelining);
- ``/bulk``: a binary message is stored (its fragments copied into one
  buffer, as a node copies chunks into a tensor) and answered ``OK``; the
  text message ``GET`` is answered with the stored bytes as 1 MiB fragments,
  the fastest way plain websockets moves bytes.

The TLS stream server speaks ``u64 length | payload`` (store, answered
``OK``) and ``u64 0`` (send the stored payload back, length-prefixed): the
ceiling of what any WebSocket stack can do over asyncio TLS.
"""

from __future__ import annotations

import asyncio
import signal
import struct
import sys
from pathlib import Path
from typing import Any

from peer.transport import loops

FRAGMENT = 1 << 20
_LENGTH = struct.Struct("<Q")


async def _websocket_handler(ws: Any) -> None:
    if ws.request.path == "/bulk":
        await _bulk(ws)
        return
    async for message in ws:
        await ws.send(message)


async def _bulk(ws: Any) -> None:
    stored = bytearray()
    while True:
        fragments = ws.recv_streaming()
        first = await anext(fragments)
        if first == "GET":
            async for _ in fragments:
                pass
            view = memoryview(stored)
            await ws.send([view[i : i + FRAGMENT] for i in range(0, len(view), FRAGMENT)])
            continue
        stored = bytearray(first)
        async for fragment in fragments:
            stored += fragment
        await ws.send(b"OK")


async def _stream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    stored = bytearray()
    try:
        while True:
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            if length == 0:
                writer.write(_LENGTH.pack(len(stored)))
                view = memoryview(stored)
                for start in range(0, len(view), FRAGMENT):
                    writer.write(view[start : start + FRAGMENT])
                    await writer.drain()
                continue
            stored = bytearray()
            while len(stored) < length:
                stored += await reader.read(min(FRAGMENT, length - len(stored)))
            writer.write(b"OK")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(state_dir: Path) -> None:
    from websockets.asyncio.server import serve as ws_serve

    from peer.security.identity import ensure_identity
    from peer.transport.tls import server_ssl_context

    identity = ensure_identity(state_dir, "raw", ("127.0.0.1",))
    context = server_ssl_context(identity)
    async with ws_serve(
        _websocket_handler, "127.0.0.1", 0, ssl=context, compression=None, max_size=None
    ) as ws_server:
        streams = await asyncio.start_server(_stream_handler, "127.0.0.1", 0, ssl=context)
        ws_port = next(iter(ws_server.sockets)).getsockname()[1]
        tls_port = streams.sockets[0].getsockname()[1]
        print(f"websockets listening on wss://127.0.0.1:{ws_port} fingerprint {identity.fingerprint}")
        print(f"tls listening on tls://127.0.0.1:{tls_port} fingerprint {identity.fingerprint}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        streams.close()


if __name__ == "__main__":
    loops.run(serve(Path(sys.argv[1])))
