"""TlsSocket: one reading thread and writing threads on one client TLS connection, on loopback.

The server is a plain threaded ``ssl`` server with the node's server context
(TLS 1.3, session tickets on: the tickets arriving while the client writes
are what broke the ``ssl.SSLSocket`` client, issue 15).
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peer.transport.tls import TrustPolicy, client_ssl_context, ensure_identity, server_ssl_context
from peer.transport.tls_socket import TlsSocket

Handler = Callable[[ssl.SSLSocket], None]
DEADLINE = 30.0
"""Seconds a test waits for a thread before calling it stuck (no timing is measured)."""


def read_exactly(sock: ssl.SSLSocket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


class Server:
    """Accepts TLS connections on 127.0.0.1 and runs ``handler`` on each, one thread per connection."""

    def __init__(self, context: ssl.SSLContext, handler: Handler, tls: bool = True) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = context
        self.handler = handler
        self.tls = tls
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            if not self.tls:
                threading.Event().wait(DEADLINE)  # accept TCP, never answer
                return
            with self.context.wrap_socket(raw, server_side=True) as sock:
                self.handler(sock)
        except OSError:
            pass
        finally:
            raw.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, bytes]:
    """Server context (tickets on), a client context pinning nothing, and the server's DER certificate."""
    identity = ensure_identity(tmp_path / "server", "server", ("127.0.0.1",))
    server = server_ssl_context(identity)
    assert server.num_tickets > 0, "the race needs post-handshake tickets"
    client = client_ssl_context(TrustPolicy(fingerprint=identity.fingerprint))
    return server, client, identity.cert_der


@pytest.fixture
def serve(contexts: tuple[ssl.SSLContext, ssl.SSLContext, bytes]) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, tls: bool = True) -> Server:
        servers.append(Server(contexts[0], handler, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def dial(server: Server, contexts: tuple[ssl.SSLContext, ssl.SSLContext, bytes], timeout: float = 10) -> TlsSocket:
    return TlsSocket.connect(("127.0.0.1", server.port), contexts[1], "127.0.0.1", timeout)


def test_reader_thread_and_caller_write_at_once(serve, contexts) -> None:  # type: ignore[no-untyped-def]
    """A reader in recv while the caller writes at once after the handshake: every request arrives, every reply is read."""

    def answer(sock: ssl.SSLSocket) -> None:
        request = read_exactly(sock, 200)
        sock.sendall(b"y" * len(request))
        read_exactly(sock, 1)  # until the client closes

    server = serve(answer)
    for _ in range(100):
        client = dial(server, contexts)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(client.recv(65536)))
        reader.start()  # as websockets does: the reader starts before the first write
        client.sendall(b"x" * 200)
        reader.join(DEADLINE)
        assert not reader.is_alive(), "the request or its reply was lost"
        assert received == [b"y" * 200]
        client.close()


def test_large_write_arrives_whole(serve, contexts) -> None:  # type: ignore[no-untyped-def]
    """5 MiB written in one sendall come back through an echo byte for byte."""
    payload = os.urandom(5 * 1024 * 1024)

    def echo(sock: ssl.SSLSocket) -> None:
        sock.sendall(hashlib.sha256(read_exactly(sock, len(payload))).digest())

    client = dial(serve(echo), contexts)
    client.sendall(memoryview(payload))
    digest = b""
    while len(digest) < 32:
        digest += client.recv(65536)
    assert digest == hashlib.sha256(payload).digest()
    client.close()


def test_close_notify_with_the_last_data_ends_the_stream(serve, contexts) -> None:  # type: ignore[no-untyped-def]
    """Data then close_notify in one read: recv returns the data, the socket stays readable, then b""."""

    def say_and_close(sock: ssl.SSLSocket) -> None:
        read_exactly(sock, 1)
        sock.sendall(b"bye")
        sock.unwrap()  # close_notify right behind the data

    client = dial(serve(say_and_close), contexts)
    client.sendall(b"!")
    data = b""
    while not data.endswith(b"bye"):
        readable, _, _ = select.select([client], [], [], DEADLINE)
        assert readable, "a wait for the socket would miss the data"
        data += client.recv(65536)
    readable, _, _ = select.select([client], [], [], DEADLINE)
    assert readable, "a wait for the socket would miss the end of the stream"
    assert client.recv(65536) == b""
    client.close()


def test_close_wakes_a_blocked_reader(serve, contexts) -> None:  # type: ignore[no-untyped-def]
    """close() from another thread ends a recv that waits on a silent peer."""
    client = dial(serve(lambda sock: read_exactly(sock, 1)), contexts)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(client.recv(65536))
        except OSError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    client.close()
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert outcome and (outcome[0] == b"" or isinstance(outcome[0], OSError))


def test_handshake_times_out_on_a_silent_server(serve, contexts) -> None:  # type: ignore[no-untyped-def]
    """A server that accepts TCP and never speaks TLS: TimeoutError, an OSError."""
    server = serve(lambda sock: None, tls=False)
    with pytest.raises(TimeoutError):
        dial(server, contexts, timeout=0.5)


def test_peer_certificate_is_the_servers(serve, contexts) -> None:  # type: ignore[no-untyped-def]
    """The DER certificate the server presented, for pinning."""
    client = dial(serve(lambda sock: read_exactly(sock, 1)), contexts)
    assert client.peer_certificate() == contexts[2]
    client.close()
