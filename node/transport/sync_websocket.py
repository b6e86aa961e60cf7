"""Blocking WebSocket connections for the synchronous client, in push mode.

The synchronous client writes from the caller's thread (no hop to an event
loop) and receives on websockets' own background thread, which hands each
complete message to the sink as it is parsed.  A round trip thus crosses one
thread boundary instead of two.  Handshake, pings and closing are the
library's (``websockets.sync``), as in :mod:`node.transport.websocket`.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection as SyncClientConnection
from websockets.sync.client import connect as sync_connect
from websockets.version import version as websockets_version

from protocol.codec import Frame

from .websocket import (
    SINGLE_FRAME_LIMIT,
    Buffer,
    CloseCode,
    ConnectionLost,
    FrameSink,
    TextFrameReceived,
    _fragments,
    _lost,
    _PushMixin,
)

__all__ = ["SyncConnection", "dial_sync"]

_DIRECT: dict[str, Any] = (
    {"legacy": True} if "legacy" in inspect.signature(sync_connect).parameters else {}
)
"""websockets 17 wants ``legacy=True`` to hand back a connection we close ourselves."""


class _SyncClientConnection(_PushMixin, SyncClientConnection):
    """Push-mode client connection; tells the sink when the reader thread ends."""

    def recv_events(self) -> None:
        try:
            super().recv_events()
        finally:
            sink, self.sink = self.sink, None  # no reference cycle outlives the connection
            if sink is not None:
                sink.connection_lost()


class SyncConnection:
    """One blocking client WebSocket.  Writes are serialised by the library's lock."""

    def __init__(self, ws: _SyncClientConnection) -> None:
        self._ws = ws

    def peer_certificate(self) -> bytes | None:
        sock: Any = self._ws.socket
        if not isinstance(sock, ssl.SSLSocket):
            return None
        der = sock.getpeercert(binary_form=True)
        return bytes(der) if der else None

    def recv(self, timeout: float) -> bytes:
        """Next binary message, pull mode (before ``attach``): the handshake reply."""
        try:
            data = self._ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        except TimeoutError:
            raise ConnectionLost(f"no reply within {timeout:.0f}s", {}) from None
        if isinstance(data, str):
            raise TextFrameReceived("text frames are not part of the protocol", {})
        return data

    def attach(self, sink: FrameSink) -> None:
        self._ws.sink = sink

    def send(self, frame: Frame) -> None:
        """Send one frame: small ones in a single write, large ones as fragments."""
        try:
            if frame.nbytes <= SINGLE_FRAME_LIMIT:
                self.send_many(frame.to_bytes())
            else:
                self._ws.send(_fragments(frame))
        except ConnectionClosed as exc:
            raise _lost(exc) from None

    def send_many(self, *datas: Buffer) -> None:
        """Several small messages in one ``sendall``."""
        ws = self._ws
        try:
            with ws.send_context():
                for data in datas:
                    ws.protocol.send_binary(data)
                ws.socket.sendall(b"".join(ws.protocol.data_to_send()))
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        except OSError as exc:
            raise ConnectionLost(f"send failed: {exc.strerror or exc}", {}) from None

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        self._ws.close(code, reason[:120])


def dial_sync(
    url: str, ssl_context: ssl.SSLContext | None, max_message_bytes: int, open_timeout: float
) -> SyncConnection:
    """Open a blocking client WebSocket; raises OSError, ssl.SSLError or ConnectionLost."""
    try:
        ws = sync_connect(
            url,
            ssl=ssl_context,
            compression=None,
            max_size=max_message_bytes,
            max_queue=64,
            open_timeout=open_timeout,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            proxy=None,
            user_agent_header=f"tessera websockets/{websockets_version}",
            logger=logging.getLogger("tessera.websockets"),
            create_connection=_SyncClientConnection,
            **_DIRECT,
        )
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {url!r}") from exc
    except InvalidHandshake as exc:
        raise ConnectionLost(f"WebSocket handshake with {url} failed: {exc}", {}) from exc
    except TimeoutError as exc:
        raise ConnectionLost(f"timed out opening {url}", {}) from exc
    assert isinstance(ws, _SyncClientConnection)
    # Small requests must not wait for the previous segment's ACK (Nagle);
    # asyncio sets this on its sockets, plain sockets need it asked for.
    ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return SyncConnection(ws)
