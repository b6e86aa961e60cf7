"""Drives one connection: frames to the session in order, replies back in order.

Push mode (see :mod:`peer.transport.websocket`): frames arrive in
``frame_received`` straight from the socket callback and small ones are
answered synchronously, with no task switch.  A heavy command (``Work``, run
in a thread) or a transfer (``AsyncWork``) makes the connection busy: later
frames wait in a backlog, in order, and reading pauses when the backlog
holds :data:`MAX_BACKLOG` frames or :data:`MAX_BACKLOG_BYTES` bytes.  The
backlog's bytes beyond a small allowance are also reserved in the
principal's quota (:class:`~node.server.quota.Reservation`), so queued
frames on all of a principal's connections count like its stored objects:
a frame that does not fit is dropped at once and answered, in order,
``QUOTA_EXCEEDED``.  The first frame of a connection (its hello) admits it
through ``on_open``, which may refuse it (too many connections of that
principal): the hello is then answered ``QUOTA_EXCEEDED`` and the
connection closed.  Replies go out with
``send_now`` when nothing is queued ahead of them, else through a writer
task that keeps their order and respects backpressure.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable, Coroutine

from protocol.codec import Frame, decode_message
from protocol.errors import ProtocolError, QuotaExceeded
from protocol.ids import RequestId
from protocol.messages import ErrorReply, Reply

from peer.transport.websocket import SINGLE_FRAME_LIMIT, Buffer, CloseCode, Connection, ConnectionLost
from .session import CLOSE_POLICY, AsyncWork, Outcome, Session, Step, Work
from .store import Hold, Principal, Reservation

__all__ = ["ConnectionDriver", "MAX_BACKLOG", "MAX_BACKLOG_BYTES", "UNCOUNTED_BACKLOG_BYTES"]

log = logging.getLogger("tessera.node")

MAX_BACKLOG = 256
"""Frames waiting behind a busy command before the connection stops reading."""

MAX_BACKLOG_BYTES = 16 * 1024 * 1024
"""Bytes of frames waiting behind a busy command before the connection stops reading
(a single larger frame is still taken: the socket had already delivered it)."""

UNCOUNTED_BACKLOG_BYTES = 64 * 1024
"""Bytes of a connection's backlog not charged to its principal's quota: room for a
``delete`` or a ``sync`` behind a busy command when the quota is full."""


class ConnectionDriver:
    """The :class:`~peer.transport.websocket.FrameSink` of one node connection."""

    def __init__(
        self,
        connection: Connection,
        session: Session,
        encode_reply: Callable[[Reply], Frame],
        on_open: Callable[[Principal], None],
    ) -> None:
        self.connection = connection
        self.session = session
        self.encode_reply = encode_reply
        self.on_open = on_open
        """Admits a newly authenticated connection; raises QuotaExceeded to refuse it."""
        self.admitted = False
        """Whether ``on_open`` accepted this connection (its principal counts it)."""
        self.closed = asyncio.Event()
        self._backlog: collections.deque[Buffer | ErrorReply] = collections.deque()
        self._backlog_bytes = 0
        self._queued: Reservation | None = None
        """The principal's quota held for this connection's backlog."""
        self._outbox: collections.deque[Frame] = collections.deque()
        self._busy = False
        self._done = False
        self._paused = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._drainer: asyncio.Task[None] | None = None

    # -- FrameSink -------------------------------------------------------

    def frame_received(self, data: Buffer) -> None:
        if self._done:
            return
        if self._busy or self._backlog:
            refusal = self._charge(_size(data))
            if refusal is None:
                self._backlog.append(data)
                self._backlog_bytes += _size(data)
            else:
                self._backlog.append(self._refusal(data, refusal))  # the frame itself is dropped
            full = len(self._backlog) >= MAX_BACKLOG or self._backlog_bytes >= MAX_BACKLOG_BYTES
            if full and not self._paused:  # a refusal holds a few bytes: only its count matters
                self._paused = True
                self.connection.pause_reading()
            return
        self._step(data)

    def text_received(self) -> None:
        log.info("text frame from %s; closing", self.connection.remote_address)
        self._finish(Outcome(None, CloseCode.UNSUPPORTED_DATA, "binary frames only"), True)

    def connection_lost(self) -> None:
        self._done = True
        self._clear_backlog()
        self.closed.set()

    # -- the backlog's quota ---------------------------------------------------

    def _charge(self, nbytes: int) -> QuotaExceeded | None:
        """Reserve what queuing ``nbytes`` more adds beyond the allowance; the refusal if it does not fit."""
        principal = self.session.principal
        if principal is None:
            return None
        counted = max(0, self._backlog_bytes + nbytes - UNCOUNTED_BACKLOG_BYTES)
        if counted == (0 if self._queued is None else self._queued.nbytes):
            return None  # inside the allowance, or unchanged: nothing to reserve
        try:
            if self._queued is None:
                self._queued = self.session.store.reserve(principal, Hold.BACKLOG, counted)
            else:
                self._queued.grow(counted - self._queued.nbytes)
        except QuotaExceeded as exc:
            # Without its traceback: that would keep the caller's frame, and so the
            # refused frame's bytes, alive until the cyclic garbage collector runs.
            return exc.with_traceback(None)
        return None

    def _uncharge(self) -> None:
        """Give back the reservation the backlog no longer needs."""
        if self._queued is not None:
            self._queued.shrink(self._queued.nbytes - max(0, self._backlog_bytes - UNCOUNTED_BACKLOG_BYTES))

    def _refusal(self, data: Buffer, exc: QuotaExceeded) -> ErrorReply:
        """The in-order answer to a frame dropped for the principal's quota (its request id decoded)."""
        try:
            request_id = decode_message(data, self.session.max_message_bytes).id
        except ProtocolError as bad:
            request_id = RequestId(bad.request_id)
        log.info("dropped a queued frame of %s: %s", self.session.principal, exc.message)
        return ErrorReply.from_exception(request_id, exc)

    def _clear_backlog(self) -> None:
        self._backlog.clear()
        self._backlog_bytes = 0
        if self._queued is not None:
            self._queued.release()
            self._queued = None

    # -- processing --------------------------------------------------------

    def _step(self, data: Buffer) -> None:
        was_open = self.session.principal is not None
        step: Step = self.session.receive(data)
        if isinstance(step, Outcome):
            self._finish(step, was_open)
        else:
            self._busy = True
            self._spawn(self._run(step, was_open))

    async def _run(self, step: Work | AsyncWork, was_open: bool) -> None:
        if isinstance(step, Work):
            outcome = await asyncio.to_thread(step.run)
        else:
            outcome = await step.run()
        self._busy = False
        self._finish(outcome, was_open)
        self._pump()

    def _pump(self) -> None:
        """Process backlogged frames until empty or busy again."""
        while self._backlog and not self._busy and not self._done:
            item = self._backlog.popleft()
            if isinstance(item, ErrorReply):
                self._send(self.encode_reply(item))
                continue
            self._backlog_bytes -= _size(item)
            self._uncharge()
            self._step(item)
        if (
            self._paused
            and len(self._backlog) < MAX_BACKLOG // 2
            and self._backlog_bytes < MAX_BACKLOG_BYTES // 2
        ):
            self._paused = False
            self.connection.resume_reading()

    def _finish(self, outcome: Outcome, was_open: bool) -> None:
        principal = self.session.principal
        if not was_open and principal is not None and not self.admitted:
            outcome = self._admit(principal, outcome)
        if outcome.reply is not None:
            self._send(self.encode_reply(outcome.reply))
        if outcome.close_code is not None and not self._done:
            self._done = True
            self._spawn(self._close(outcome.close_code, outcome.close_reason))

    def _admit(self, principal: Principal, outcome: Outcome) -> Outcome:
        """Count the new connection for its principal; over its cap, refuse the hello and close."""
        try:
            self.on_open(principal)
        except QuotaExceeded as exc:
            log.info("refused a connection of %s from %s: %s", principal, self.connection.remote_address, exc.message)
            self.session.close()
            request_id = outcome.reply.id if outcome.reply is not None else RequestId(0)
            return Outcome(ErrorReply.from_exception(request_id, exc), CLOSE_POLICY, "too many connections")
        self.admitted = True
        return outcome

    # -- writing -----------------------------------------------------------

    def _send(self, frame: Frame) -> None:
        if (
            not self._outbox
            and frame.nbytes <= SINGLE_FRAME_LIMIT
            and self.connection.send_now(frame.to_bytes())
        ):
            return
        self._outbox.append(frame)
        if len(self._outbox) == 1:
            self._drainer = self._spawn(self._drain())

    async def _drain(self) -> None:
        try:
            while self._outbox:
                await self.connection.send(self._outbox[0])
                self._outbox.popleft()
        except ConnectionLost:
            self._outbox.clear()

    async def _close(self, code: int, reason: str) -> None:
        """Close after the queued replies (the error explaining why) are out."""
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            await asyncio.wait({drainer})
        try:
            await self.connection.close(code, reason)
        except ConnectionLost:
            pass

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def revoke(self, reason: str) -> None:
        """Stop serving this connection (its credentials were revoked) and close it."""
        if not self._done:
            self._done = True
            self._clear_backlog()
            self._spawn(self._close(CloseCode.POLICY_VIOLATION, reason))

    async def wait(self) -> None:
        """Until the connection is closed; then cancel what is left of its tasks."""
        try:
            await self.connection.wait_closed()
        finally:
            self.connection_lost()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)


def _size(data: Buffer) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)
