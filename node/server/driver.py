"""Drives one connection: frames to the session in order, replies back in order.

Push mode (see :mod:`node.transport.websocket`): frames arrive in
``frame_received`` straight from the socket callback and small ones are
answered synchronously, with no task switch.  A heavy command (``Work``, run
in a thread) or a transfer (``AsyncWork``) makes the connection busy: later
frames wait in a backlog, in order, and reading pauses if the backlog grows,
so a client cannot queue unbounded memory.  Replies go out with
``send_now`` when nothing is queued ahead of them, else through a writer
task that keeps their order and respects backpressure.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable, Coroutine

from protocol.codec import Frame
from protocol.messages import Reply

from ..transport.websocket import SINGLE_FRAME_LIMIT, Buffer, CloseCode, Connection, ConnectionLost
from .session import AsyncWork, Outcome, Session, Step, Work
from .store import Principal

__all__ = ["ConnectionDriver", "MAX_BACKLOG"]

log = logging.getLogger("tessera.node")

MAX_BACKLOG = 256
"""Frames waiting behind a busy command before the connection stops reading."""


class ConnectionDriver:
    """The :class:`~node.transport.websocket.FrameSink` of one node connection."""

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
        self.closed = asyncio.Event()
        self._backlog: collections.deque[Buffer] = collections.deque()
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
            self._backlog.append(data)
            if len(self._backlog) >= MAX_BACKLOG and not self._paused:
                self._paused = True
                self.connection.pause_reading()
            return
        self._step(data)

    def text_received(self) -> None:
        log.info("text frame from %s; closing", self.connection.remote_address)
        self._finish(Outcome(None, CloseCode.UNSUPPORTED_DATA, "binary frames only"), True)

    def connection_lost(self) -> None:
        self._done = True
        self._backlog.clear()
        self.closed.set()

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
            self._step(self._backlog.popleft())
        if self._paused and len(self._backlog) < MAX_BACKLOG // 2:
            self._paused = False
            self.connection.resume_reading()

    def _finish(self, outcome: Outcome, was_open: bool) -> None:
        principal = self.session.principal
        if not was_open and principal is not None:
            self.on_open(principal)
        if outcome.reply is not None:
            self._send(self.encode_reply(outcome.reply))
        if outcome.close_code is not None and not self._done:
            self._done = True
            self._spawn(self._close(outcome.close_code, outcome.close_reason))

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
            self._backlog.clear()
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
