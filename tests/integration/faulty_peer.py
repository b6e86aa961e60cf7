"""A scripted peer that fails in one chosen way, for the transport fault tests.

    python -m tests.integration.faulty_peer MODE STATE_DIR

Prints ``faulty peer listening on PORT fingerprint FP`` and serves until
killed.  It speaks just enough of the protocol to be dialed (TLS with a
node identity of its own, WebSocket, a hello reply), then breaks:

- ``tls-reset``: reads the ClientHello and resets the TCP connection;
- ``tls-silent``: accepts TCP and never answers (the TLS handshake times out);
- ``reset-after-tls``: completes TLS, then resets TCP before the HTTP upgrade;
- ``upgrade-silent``: completes TLS, never answers the HTTP upgrade;
- ``hello-silent``: completes the WebSocket handshake, never answers hello;
- ``killed-mid-frame``: answers hello; at the next request, writes the first
  bytes of a 4 KiB frame and SIGKILLs itself;
- ``reset-mid-session``: answers hello; at the next request, resets TCP;
- ``no-close-frame``: answers hello; at the next request, closes the
  connection (TLS close_notify, TCP FIN) without a WebSocket close frame.

A real node does none of this on purpose; the client must turn each into a
typed Tessera error all the same.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from peer.security.identity import ensure_identity
from peer.transport.tls import server_ssl_context
from protocol.codec import decode_message, encode_message
from protocol.ids import NodeId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import HelloRequest

MODES = (
    "tls-reset", "tls-silent", "reset-after-tls", "upgrade-silent", "hello-silent",
    "killed-mid-frame", "reset-mid-session", "no-close-frame",
)


def _reset(sock: socket.socket | None) -> None:
    """Make the coming close a TCP reset (SO_LINGER with a zero timeout)."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str) -> None:
    if mode == "tls-reset":
        await reader.read(1)  # the ClientHello has begun
    if mode in ("tls-reset", "reset-after-tls"):  # (this handler runs after a TLS handshake)
        _reset(writer.get_extra_info("socket"))
        writer.transport.abort()
        return
    await asyncio.Event().wait()  # tls-silent, upgrade-silent: say nothing, ever


async def _websocket(ws: ServerConnection, mode: str) -> None:
    hello = decode_message(await ws.recv(decode=False), DEFAULT_MAX_MESSAGE_BYTES)
    if mode == "hello-silent":
        await asyncio.Event().wait()
    assert isinstance(hello, HelloRequest)
    reply = hello.reply(NodeId("faulty"), "user:tester", ("node",), DEFAULT_MAX_MESSAGE_BYTES)
    await ws.send(encode_message(reply).to_bytes())
    await ws.recv(decode=False)  # the client's next request: now break
    if mode == "killed-mid-frame":
        header = bytes([0x82, 126]) + struct.pack("!H", 4096)  # FIN, binary, 4096 bytes follow
        ws.transport.write(header + b"\0" * 1000)
        await asyncio.sleep(0.2)  # let the bytes leave
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "reset-mid-session":
        _reset(ws.transport.get_extra_info("socket"))
        ws.transport.abort()
    else:  # no-close-frame
        ws.transport.close()
    await asyncio.Event().wait()


async def main(mode: str, state_dir: Path) -> None:
    identity = ensure_identity(state_dir, "faulty", ("127.0.0.1",))
    context = server_ssl_context(identity)
    if mode in ("tls-reset", "tls-silent", "reset-after-tls", "upgrade-silent"):
        server = await asyncio.start_server(
            lambda r, w: _raw(r, w, mode), "127.0.0.1", 0,
            ssl=context if mode in ("reset-after-tls", "upgrade-silent") else None,
        )
        port = server.sockets[0].getsockname()[1]
    else:
        ws_server = await serve(
            lambda ws: _websocket(ws, mode), "127.0.0.1", 0, ssl=context, compression=None,
        )
        port = next(iter(ws_server.sockets)).getsockname()[1]
    print(f"faulty peer listening on {port} fingerprint {identity.fingerprint}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in MODES:
        raise SystemExit(f"usage: python -m tests.integration.faulty_peer {{{','.join(MODES)}}} STATE_DIR")
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
