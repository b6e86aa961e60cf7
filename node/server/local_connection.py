"""One in-process connection to a node: frames through its Session in order, on the caller's thread or the loop.

The in-process twin of :class:`~node.server.driver.ConnectionDriver`
(:mod:`node.server.inprocess` builds VirtualNodes and their node-to-node
links on it).  Frames are answered inline while the connection is idle; an
``AsyncWork`` (a transfer, a deal, a secret-sharing step) runs on the
in-process network's event loop thread (:class:`LocalLoop`) and makes the
connection busy, later frames waiting in order behind it, as on a socket.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from typing import Any, Callable, Coroutine

from protocol.codec import encode_message
from protocol.errors import MessageTooLarge, TesseraError
from protocol.messages import ErrorReply, Reply

from .session import AsyncWork, Outcome, Session, Work

__all__ = ["LocalLoop", "LocalConnection"]


class LocalLoop:
    """One daemon thread running the event loop of every in-process node of a network."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="tessera-in-process", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


def _encoded(reply: Reply, limit: int) -> bytes:
    """A reply as the wire carries it; one the peer would refuse for its size becomes TOO_LARGE."""
    try:
        frame = encode_message(reply)
        if frame.nbytes > limit:
            raise MessageTooLarge.for_size(f"{reply.KIND.value} reply", frame.nbytes, limit)
    except TesseraError as exc:
        frame = encode_message(ErrorReply.from_exception(reply.id, exc))
    return frame.to_bytes()


class LocalConnection:
    """The node side of one in-process connection: its frames through one Session, in order.

    ``feed`` may be called from any thread.  An idle connection answers
    inline; an ``AsyncWork`` (a transfer, a deal, a step) runs on the
    network's loop and makes the connection busy, and later frames wait in
    order until it is done.  ``Work`` (a heavy command) runs inline too:
    there is no event loop of the user's to protect.  Replies go to
    ``reply``, in order, outside the connection's lock; when the session
    closes the connection (a protocol violation, a refused hello), ``lost``
    is called after the last of them, as a socket's peer would see the close.
    """

    def __init__(
        self,
        session: Session,
        loop: LocalLoop,
        reply: Callable[[bytes], None],
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.session = session
        self._loop = loop
        self._reply = reply
        self._lost = lost
        self._dropped = False
        """The session closed the connection; ``lost`` is still to be called."""
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False
        self._backlog: collections.deque[bytes] = collections.deque()
        self._answers: collections.deque[bytes] = collections.deque()
        self._delivering = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            if self._busy or self._backlog:
                self._backlog.append(data)
                return
            self._step(data)
        self._deliver()

    def _step(self, data: bytes) -> None:
        """Process one frame (lock held); queue its answer, or start its AsyncWork."""
        step = self.session.receive(data)
        if isinstance(step, Work):
            step = step.run()
        if isinstance(step, AsyncWork):
            self._busy = True
            self._loop.submit(self._run(step))
            return
        self._finish(step)

    def _finish(self, outcome: Outcome) -> None:
        if outcome.reply is not None:
            self._answers.append(_encoded(outcome.reply, self.session.max_message_bytes))
        if outcome.close_code is not None:
            self._dropped = not self._closed
            self._close_locked()

    async def _run(self, work: AsyncWork) -> None:
        outcome = await work.run()
        with self._lock:
            self._busy = False
            self._finish(outcome)
            while self._backlog and not self._busy and not self._closed:
                self._step(self._backlog.popleft())
        self._deliver()

    def _deliver(self) -> None:
        """Hand queued answers to ``reply`` in order (one deliverer at a time), then a close to ``lost``."""
        with self._delivering:
            while True:
                with self._lock:
                    if not self._answers:
                        dropped, self._dropped = self._dropped, False
                        break
                    data = self._answers.popleft()
                self._reply(data)
        if dropped:
            self._lost()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if not self._closed:
            self._closed = True
            self._backlog.clear()
            self.session.close()
