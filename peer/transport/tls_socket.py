"""Client TLS over a plain socket, for one reading thread and any writing threads.

The synchronous client reads on websockets' background thread and writes
from the caller's thread.  Over an :class:`ssl.SSLSocket` that means
``SSL_read`` and ``SSL_write`` on one OpenSSL connection object at the same
time, which OpenSSL does not allow.  It goes wrong right after the opening
handshake: the server's TLS 1.3 session tickets arrive while the caller
writes its HTTP upgrade request, the reader's ``SSL_read`` takes the
connection back into handshake state to process them, and the concurrent
``SSL_write`` loses its record (the request never reaches the wire and the
client waits for the open time-out), fails with ``[SSL] internal error`` or
``UNEXPECTED_MESSAGE``, or crashes the interpreter.

:class:`TlsSocket` runs the TLS state machine over memory BIOs, as asyncio
does: the connection object is only touched under a lock and never while a
thread waits on the network; socket reads and writes happen outside that
lock.  It offers the few socket methods websockets' synchronous connection
calls.  Must not import websockets or asyncio.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

__all__ = ["TlsSocket", "RECV_BYTES", "ENCRYPT_BYTES"]

RECV_BYTES = 256 * 1024
"""Most bytes taken from the socket per read."""

ENCRYPT_BYTES = 256 * 1024
"""Plaintext encrypted per step of a large write, so ciphertext is sent while more is made."""


class TlsSocket:
    """A client TLS connection; ``recv`` from one thread, ``sendall`` from any."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._state = threading.Lock()
        """Guards the TLS object and both BIOs; never held across socket I/O."""
        self._sending = threading.Lock()
        """Held by the one thread writing ciphertext to the socket, which keeps records in order."""
        self._ended = False
        """The peer ended the stream (close_notify or EOF); ``recv`` says b"" from now on."""
        self._drained = False
        """No whole record waits in the TLS buffers (only the reader thread reads this)."""
        self.family = sock.family

    @classmethod
    def connect(
        cls, address: tuple[str, int], context: ssl.SSLContext, server_hostname: str | None, timeout: float
    ) -> TlsSocket:
        """Open TCP to ``address`` and complete the TLS handshake within ``timeout`` seconds.

        Raises OSError (``TimeoutError`` past the deadline, ``ssl.SSLError``
        for a failed handshake, including ``ssl.SSLCertVerificationError``).
        """
        deadline = time.monotonic() + timeout
        sock = socket.create_connection(address, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = cls(sock, context, server_hostname)
            tls._handshake(deadline)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return tls

    def _handshake(self, deadline: float) -> None:
        # Before the reader thread exists: this thread alone uses the socket.
        while True:
            failure: ssl.SSLError | None = None
            with self._state:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                except ssl.SSLError as exc:  # the alert telling the peer why goes out first
                    failure, done = exc, True
                out = self._outgoing.read()
            if out:
                try:
                    self._sock.sendall(out)
                except OSError:
                    if failure is None:
                        raise
            if failure is not None:
                raise failure
            if done:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out during the TLS handshake")
            self._sock.settimeout(remaining)
            data = self._sock.recv(RECV_BYTES)
            with self._state:
                self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Hand bytes from the socket (b"": its end) to TLS; the caller holds ``_state``."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    # -- what websockets' synchronous connection calls --------------------------

    def recv(self, bufsize: int) -> bytes:
        """Decrypted bytes (at least one), or b"" at the end of the stream.

        Returns everything already decrypted at once, whatever ``bufsize``
        says: the caller waits for the socket to become readable before
        calling again, so nothing may stay behind in the TLS buffers where
        that wait cannot see it.  For the same reason, when the peer's
        close_notify comes with the last data, the socket's reading side is
        shut so that the next wait ends at once and the next call says b"".
        """
        if self._ended:
            return b""
        while True:
            data = self._sock.recv(RECV_BYTES) if self._drained else None
            chunks: list[bytes] = []
            ended = False
            with self._state:
                if data is not None:
                    self._feed(data)
                try:
                    while True:
                        chunk = self._tls.read(RECV_BYTES)
                        if not chunk:
                            ended = True
                            break
                        chunks.append(chunk)
                except ssl.SSLWantReadError:
                    self._drained = True  # only a partial record, at most, is left
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    ended = True  # close_notify, or TCP closed without it
                answered = self._outgoing.pending > 0
            if answered:  # post-handshake answers (a key update); none is usual
                self._flush()
            if ended:
                self._ended = True
                if not chunks:
                    return b""
                try:
                    self._sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # already closed: the wait ends anyway
            if chunks:
                return b"".join(chunks)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, view.nbytes, ENCRYPT_BYTES):
            with self._sending:
                with self._state:
                    self._tls.write(view[start : start + ENCRYPT_BYTES])
                    out = self._outgoing.read()  # with whatever the reader made before, in order
                self._sock.sendall(out)
        self._flush()

    def _flush(self) -> None:
        """Send ciphertext still waiting (the reader's answers), unless a writer is sending.

        A writer looks again after releasing ``_sending``, so bytes left to
        it while it sends are never stranded.
        """
        while True:
            with self._state:
                if not self._outgoing.pending:
                    return
            if not self._sending.acquire(blocking=False):
                return
            try:
                with self._state:
                    out = self._outgoing.read()
                if out:
                    self._sock.sendall(out)
            finally:
                self._sending.release()

    def peer_certificate(self) -> bytes | None:
        """DER certificate the server presented in the handshake."""
        with self._state:
            der = self._tls.getpeercert(binary_form=True)
        return bytes(der) if der else None

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self._sock.setsockopt(level, option, value)

    def getsockname(self) -> object:
        return self._sock.getsockname()

    def getpeername(self) -> object:
        return self._sock.getpeername()

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        """Close the socket; a thread blocked in ``recv`` wakes up with the end of the stream."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # close() alone would not wake a blocked recv
        except OSError:
            pass  # not connected any more
        self._sock.close()
