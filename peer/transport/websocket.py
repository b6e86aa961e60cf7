"""WebSocket connections: the only module that imports ``websockets``.

Wraps the library's asyncio server and client behind :class:`Connection`, so
sessions and clients deal in :class:`~protocol.codec.Frame`s and our own
exceptions.  Compression is always off: permessage-deflate caps tensor
traffic near 35 MB/s and buys nothing on random-looking floats.  Large frames
go out as 1 MiB fragments straight from tensor memory.

Two ways to read.  ``recv()`` pulls messages through the library's queue
(one task wake-up per message).  ``attach(sink)`` switches a connection to
push mode: our connection subclasses hand every complete binary message to
the sink straight from ``data_received``, and ``send_now`` writes small
frames synchronously through the library's sans-I/O core.  That removes two
task switches per message each way, which is most of a small round trip's
cost over raw WebSockets; handshake, pings and closing stay the library's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Optional, Protocol, Tuple, Union

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.version import version as websockets_version

from protocol.codec import Frame
from protocol.errors import TesseraError

from peer.errors import reason_of

__all__ = [
    "CloseCode",
    "Connection",
    "FrameSink",
    "ConnectionLost",
    "TextFrameReceived",
    "Listener",
    "HttpHandler",
    "listen",
    "listening_url",
    "dial",
    "FRAGMENT_BYTES",
]

FRAGMENT_BYTES = 1024 * 1024
"""Size of the fragments a large frame is sent in."""


def listening_url(host: str, port: int, insecure: bool) -> str:
    """The URL a listener bound to ``host``:``port`` announces (wildcards: the host name)."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"{'ws' if insecure else 'wss'}://{host}:{port}"

SINGLE_FRAME_LIMIT = 1024 * 1024
"""Frames up to this size are joined and sent as one WebSocket frame."""


WRITE_LIMIT = 4 * 1024 * 1024
"""Unsent bytes a connection buffers before ``send`` waits (websockets' default,
32 KiB, makes every 1 MiB fragment wait for the socket to drain: lock-step)."""

WRITE_HIGH_WATER = 4 * 1024 * 1024
"""Above this many unsent bytes, ``send_now`` declines and callers await ``send``."""


Buffer = Union[bytes, bytearray, memoryview]


class FrameSink(Protocol):
    """Receives a push-mode connection's messages, on the event loop."""

    def frame_received(self, data: Buffer) -> None: ...

    def text_received(self) -> None: ...

    def connection_lost(self) -> None: ...


class _PushMixin:
    """Delivers complete binary messages to a sink from ``data_received``.

    Fragmented messages are reassembled here (the library already enforces
    the size limit across fragments); everything else (handshake events,
    control frames, pull mode before ``attach``) goes to the library.
    """

    sink: FrameSink | None = None
    _parts: list[Buffer] | None = None

    def process_event(self, event: Any) -> None:
        sink = self.sink
        if sink is None or not isinstance(event, WsFrame):
            super().process_event(event)  # type: ignore[misc]
            return
        # Payloads are passed on as websockets produced them (bytes, or a
        # bytearray for unmasked frames): converting would copy every byte.
        if event.opcode is Opcode.BINARY:
            if event.fin:
                self._deliver(sink, event.data)
            else:
                self._parts = [event.data]
        elif event.opcode is Opcode.CONT:
            if self._parts is None:
                return  # continuation of a text message already refused
            self._parts.append(event.data)
            if event.fin:
                data, self._parts = b"".join(self._parts), None
                self._deliver(sink, data)
        elif event.opcode is Opcode.TEXT:
            sink.text_received()
        else:
            super().process_event(event)  # type: ignore[misc]

    def _deliver(self, sink: FrameSink, data: Buffer) -> None:
        try:
            sink.frame_received(data)
        except Exception:  # a sink bug must not kill the connection's reader
            logging.getLogger("tessera.transport").exception("frame handler failed")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        sink, self.sink = self.sink, None  # break sink -> driver -> connection -> sink
        if sink is not None:
            sink.connection_lost()


class _ServerConnection(_PushMixin, ServerConnection):
    pass


class _ClientConnection(_PushMixin, ClientConnection):
    pass


class CloseCode:
    """WebSocket close codes we use (RFC 6455 section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class ConnectionLost(TesseraError):
    """The WebSocket closed; ``code`` and ``reason`` are the peer's, if any."""

    @classmethod
    def from_close(cls, code: int | None, reason: str) -> ConnectionLost:
        shown = f"code {code}" if code is not None else "no close frame"
        text = f"connection closed ({shown}{': ' + reason if reason else ''})"
        return cls(text, {"close_code": code, "reason": reason})


class TextFrameReceived(TesseraError):
    """The peer sent a text frame; the protocol only speaks binary frames."""


def _fragments(frame: Frame) -> Iterator[memoryview]:
    for part in frame.parts:
        view = memoryview(part).cast("B")
        for start in range(0, view.nbytes, FRAGMENT_BYTES):
            yield view[start : start + FRAGMENT_BYTES]


@dataclass(eq=False)
class Connection:
    """One WebSocket, either side.  Sends must not interleave: callers serialise."""

    _ws: ServerConnection | ClientConnection

    @property
    def remote_address(self) -> str:
        address = self._ws.remote_address
        if isinstance(address, tuple) and len(address) >= 2:
            return f"{address[0]}:{address[1]}"
        return str(address)

    @property
    def path(self) -> str:
        request = self._ws.request
        return request.path if request is not None else "/"

    def peer_certificate(self) -> bytes | None:
        """DER certificate the peer presented in the TLS handshake, if any."""
        ssl_object = self._ws.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return bytes(der) if der else None

    def attach(self, sink: FrameSink) -> None:
        """Switch to push mode: messages go to ``sink``; ``recv`` is no longer used."""
        ws = self._ws
        assert isinstance(ws, _PushMixin), "connections are made by listen() and dial()"
        ws.sink = sink
        if ws.protocol.state is not State.OPEN:
            sink.connection_lost()

    def send_now(self, *datas: bytes) -> bool:
        """Write small messages synchronously, as one TLS write; False if not possible now.

        Declines (and the caller awaits :meth:`send`) while a fragmented
        message is being sent, when the connection is not open, or when the
        transport's buffer is above :data:`WRITE_HIGH_WATER` (backpressure).
        """
        ws = self._ws
        if (
            ws.protocol.state is not State.OPEN
            or ws.send_in_progress is not None
            or ws.transport.get_write_buffer_size() > WRITE_HIGH_WATER
        ):
            return False
        for data in datas:
            ws.protocol.send_binary(data)
        chunks = ws.protocol.data_to_send()
        try:
            ws.transport.write(b"".join(chunks))
        except Exception as exc:  # the transport reports a dead socket here
            ws.set_connection_exc(exc)
            ws.transport.abort()
        return True

    def pause_reading(self) -> None:
        self._ws.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._ws.transport.is_closing():
            self._ws.transport.resume_reading()

    def abort(self) -> None:
        """Drop the TCP connection at once (no closing handshake)."""
        self._ws.transport.abort()

    async def recv(self) -> bytes:
        """Next binary message; raises ConnectionLost or TextFrameReceived."""
        try:
            data = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        except WebSocketException as exc:
            raise ConnectionLost(f"receive failed: {exc}", {}) from exc
        if isinstance(data, str):
            raise TextFrameReceived("text frames are not part of the protocol", {})
        return data

    async def send(self, frame: Frame) -> None:
        """Send one frame: joined when small, as fragments when large."""
        try:
            if frame.nbytes <= SINGLE_FRAME_LIMIT:
                await self._ws.send(frame.to_bytes())
            else:
                await self._ws.send(_fragments(frame))
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        except (WebSocketException, OSError) as exc:
            raise ConnectionLost(f"send failed: {reason_of(exc)}", {}) from exc

    async def send_bytes(self, data: bytes) -> None:
        """Send one already-encoded message, waiting for the socket if needed."""
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        except (WebSocketException, OSError) as exc:
            raise ConnectionLost(f"send failed: {reason_of(exc)}", {}) from exc

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Closing handshake; a connection that is already broken is just dropped."""
        try:
            await self._ws.close(code, reason[:120])
        except (WebSocketException, OSError):
            logging.getLogger("tessera.transport").debug("closing a broken connection", exc_info=True)
            self._ws.transport.abort()

    async def wait_closed(self) -> None:
        await self._ws.wait_closed()


def _lost(exc: ConnectionClosed) -> ConnectionLost:
    close = exc.rcvd or exc.sent
    if close is None:
        return ConnectionLost.from_close(None, "")
    return ConnectionLost.from_close(close.code, close.reason)

Handler = Callable[[Connection], Awaitable[None]]


@dataclass(eq=False)
class Listener:
    """A listening WebSocket server."""

    _server: Server

    @property
    def port(self) -> int:
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("server has no listening socket")

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


HttpHandler = Callable[[str], Optional[Tuple[int, str, bytes]]]
"""Answers a plain HTTP GET: path (with query) -> (status, content type, body), or None."""


def _is_websocket_upgrade(request: Request) -> bool:
    values = request.headers.get_all("Upgrade")
    return any(token.strip().lower() == "websocket" for v in values for token in v.split(","))


def _http_responder(http: HttpHandler) -> Callable[[ServerConnection, Request], Response | None]:
    """A websockets ``process_request`` hook serving ``http`` for non-WebSocket requests."""

    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        if _is_websocket_upgrade(request):
            return None
        answer = http(request.path)
        if answer is None:
            return None  # the handshake then fails with 426 Upgrade Required
        status, content_type, body = answer
        response = ws.respond(status, "")
        for name in ("Content-Type", "Content-Length"):
            del response.headers[name]
        response.headers["Content-Type"] = content_type
        response.headers["Content-Length"] = str(len(body))
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.body = body
        return response

    return process_request


async def listen(
    handler: Handler,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    max_message_bytes: int,
    *,
    http: HttpHandler | None = None,
) -> Listener:
    """Start serving ``handler`` on ``host:port``; raises OSError if it cannot bind.

    With ``http``, plain HTTP GET requests (those not asking for a WebSocket
    upgrade) on the same port are answered by it; ``None`` from it continues
    with the WebSocket handshake, which then refuses the request.
    """

    async def on_connection(ws: ServerConnection) -> None:
        await handler(Connection(ws))

    server = await ws_serve(
        on_connection,
        host,
        port,
        process_request=_http_responder(http) if http is not None else None,
        ssl=ssl_context,
        compression=None,
        max_size=max_message_bytes,
        max_queue=64,
        write_limit=WRITE_LIMIT,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=5,
        logger=logging.getLogger("tessera.websockets"),
        create_connection=_ServerConnection,
    )
    return Listener(server)


async def dial(
    url: str,
    ssl_context: ssl.SSLContext | None,
    max_message_bytes: int,
    open_timeout: float = 10.0,
) -> Connection:
    """Open a client WebSocket within ``open_timeout`` seconds.

    Raises ValueError (not a WebSocket URL), OSError (TCP or TLS failed,
    ``ssl.SSLError`` included) or ConnectionLost (the WebSocket handshake
    failed, the connection closed during it, or time ran out); nothing from
    websockets or asyncio.
    """
    try:
        ws = await ws_connect(
            url,
            ssl=ssl_context,
            compression=None,
            max_size=max_message_bytes,
            max_queue=64,
            write_limit=WRITE_LIMIT,
            open_timeout=open_timeout,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            proxy=None,
            user_agent_header=f"tessera websockets/{websockets_version}",
            create_connection=_ClientConnection,
        )
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {url!r}") from exc
    except ConnectionClosed as exc:
        raise _lost(exc) from exc
    except WebSocketException as exc:  # InvalidHandshake and its kin
        raise ConnectionLost(f"WebSocket handshake failed: {exc}", {}) from exc
    except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct classes before Python 3.11
        raise ConnectionLost(f"timed out opening the connection after {open_timeout:g}s", {}) from exc
    return Connection(ws)

