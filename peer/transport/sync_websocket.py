"""Blocking WebSocket connections for the synchronous client, in push mode.

The synchronous client writes from the caller's thread (no hop to an event
loop) and receives on websockets' own background thread, which hands each
complete message to the sink as it is parsed.  A round trip thus crosses one
thread boundary instead of two.  Handshake, pings and closing are the
library's (``websockets.sync``), as in :mod:`peer.transport.websocket`.

Reading and writing from two threads is why TLS is ours here
(:class:`~peer.transport.tls_socket.TlsSocket`) and not an
``ssl.SSLSocket``: OpenSSL forbids using one connection from two threads at
once.  Nothing from websockets escapes this module: failures are
:class:`~peer.transport.websocket.ConnectionLost`, or OSError (``ssl``
errors included) while dialing.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
import threading
import time
from typing import Any, cast

from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection as SyncClientConnection
from websockets.sync.client import connect as sync_connect
from websockets.uri import parse_uri
from websockets.version import version as websockets_version

from protocol.codec import Frame

from peer.errors import reason_of
from peer.transport.tls_socket import TlsSocket
from peer.transport.websocket import (
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

log = logging.getLogger("tessera.transport")


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
    """One blocking client WebSocket.  Whole messages are sent one at a time, in call order."""

    def __init__(self, ws: _SyncClientConnection, tls: TlsSocket | None) -> None:
        self._ws = ws
        self._tls = tls
        self._writing = threading.Lock()
        """A fragmented message must not interleave with another thread's message."""

    def peer_certificate(self) -> bytes | None:
        """DER certificate the peer presented in the TLS handshake (None without TLS)."""
        return self._tls.peer_certificate() if self._tls is not None else None

    def recv(self, timeout: float) -> bytes:
        """Next binary message, pull mode (before ``attach``): the handshake reply."""
        try:
            data = self._ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        except TimeoutError:
            raise ConnectionLost(f"no reply within {timeout:g}s", {"timeout": timeout}) from None
        except WebSocketException as exc:
            raise ConnectionLost(f"receive failed: {exc}", {}) from exc
        if isinstance(data, str):
            raise TextFrameReceived("text frames are not part of the protocol", {})
        return data

    def attach(self, sink: FrameSink) -> None:
        self._ws.sink = sink

    def send(self, frame: Frame) -> None:
        """Send one frame: small ones in a single write, large ones as fragments."""
        if frame.nbytes <= SINGLE_FRAME_LIMIT:
            self.send_many(frame.to_bytes())
            return
        with self._writing:
            try:
                self._ws.send(_fragments(frame))
            except ConnectionClosed as exc:
                raise _lost(exc) from None
            except (WebSocketException, OSError) as exc:
                raise ConnectionLost(f"send failed: {reason_of(exc)}", {}) from exc

    def send_many(self, *datas: Buffer) -> None:
        """Several small messages in one ``sendall``."""
        ws = self._ws
        with self._writing:
            try:
                with ws.send_context():
                    for data in datas:
                        ws.protocol.send_binary(data)
                    ws.socket.sendall(b"".join(ws.protocol.data_to_send()))
            except ConnectionClosed as exc:
                raise _lost(exc) from None
            except (WebSocketException, OSError) as exc:
                raise ConnectionLost(f"send failed: {reason_of(exc)}", {}) from exc

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Closing handshake; a connection that is already broken is just dropped."""
        try:
            self._ws.close(code, reason[:120])
        except (WebSocketException, OSError):
            log.debug("closing a broken connection", exc_info=True)


def dial_sync(
    url: str, ssl_context: ssl.SSLContext | None, max_message_bytes: int, open_timeout: float
) -> SyncConnection:
    """Open a blocking client WebSocket within ``open_timeout`` seconds.

    Raises ValueError (not a WebSocket URL), OSError (TCP or TLS failed:
    ``ssl.SSLError``, ``TimeoutError``...) or ConnectionLost (the WebSocket
    handshake failed or timed out).  TLS is ours (:class:`TlsSocket`):
    websockets is handed a connected, encrypted socket and a ``ws://``
    address for the HTTP upgrade it carries.
    """
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {url!r}") from exc
    if uri.secure != (ssl_context is not None):
        raise ValueError(f"{url}: a TLS context goes with wss:// URLs, and only with them")
    deadline = time.monotonic() + open_timeout
    sock: socket.socket
    tls: TlsSocket | None = None
    if ssl_context is not None:
        tls = TlsSocket.connect((uri.host, uri.port), ssl_context, uri.host, open_timeout)
        sock = cast(socket.socket, tls)  # duck-typed: the methods websockets calls
    else:
        sock = socket.create_connection((uri.host, uri.port), timeout=open_timeout)
        # Small requests must not wait for the previous segment's ACK (Nagle);
        # asyncio sets this on its sockets, plain sockets need it asked for.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    try:
        ws = sync_connect(
            f"ws://{host}:{uri.port}{uri.resource_name}",
            sock=sock,
            compression=None,
            max_size=max_message_bytes,
            max_queue=64,
            open_timeout=max(deadline - time.monotonic(), 0.001),
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            proxy=None,
            user_agent_header=f"tessera websockets/{websockets_version}",
            logger=logging.getLogger("tessera.websockets"),
            create_connection=_SyncClientConnection,
            **_DIRECT,
        )
    except BaseException as exc:
        sock.close()
        if isinstance(exc, ConnectionClosed):
            raise _lost(exc) from exc
        if isinstance(exc, WebSocketException):  # InvalidHandshake included
            raise ConnectionLost(f"WebSocket handshake failed: {exc}", {}) from exc
        if isinstance(exc, TimeoutError):
            raise ConnectionLost(f"timed out opening the WebSocket after {open_timeout:g}s", {}) from exc
        raise
    assert isinstance(ws, _SyncClientConnection)
    return SyncConnection(ws, tls)
