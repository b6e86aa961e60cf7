"""The synchronous client channel: a private event loop thread per connection.

:class:`ThreadedChannel` owns a private event loop in a daemon thread
(explicitly, per channel) and forwards to an
:class:`~node.transport.channel.AsyncChannel` running there, so scripts and
notebooks (whose own loop may already be running) get blocking calls that
never touch the caller's loop.  Requests are encoded in the caller's thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import threading
from typing import Any, Coroutine, Optional, Protocol, Tuple, TypeVar

from protocol.codec import Frame
from protocol.errors import TesseraError
from protocol.ids import NodeId
from protocol.messages import Reply, Request

from ..errors import ClientClosed, NodeUnavailable
from ..transport.channel import CALL_TIMEOUT, AsyncChannel, Endpoint
from ..transport.tracker import RequestTracker

__all__ = ["Channel", "ThreadedChannel"]

T = TypeVar("T")
_Item = Tuple[Request, str, Frame, Optional["concurrent.futures.Future[Reply]"]]


class Channel(Protocol):
    """What a client handle needs: ordered posts and blocking calls."""

    tracker: RequestTracker

    @property
    def node_id(self) -> NodeId: ...

    @property
    def principal(self) -> str: ...

    def post(self, request: Request, description: str) -> None: ...

    def call(self, request: Request) -> Reply: ...

    def call_async(self, request: Request) -> concurrent.futures.Future[Reply]: ...

    def close(self) -> None: ...


class ThreadedChannel:
    """Blocking facade over an :class:`AsyncChannel` on a private loop thread."""

    _counter = itertools.count(1)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.tracker = RequestTracker(endpoint.url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever,
            name=f"tessera-client-{next(self._counter)}",
            daemon=True,
        )
        self._pending: collections.deque[_Item] = collections.deque()
        self._scheduled = False
        self._thread.start()
        self._inner: AsyncChannel = self._run(self._make(endpoint))
        try:
            self._run(self._inner.open())
        except BaseException:
            self._stop_loop()
            raise

    async def _make(self, endpoint: Endpoint) -> AsyncChannel:
        return AsyncChannel(endpoint, self.tracker)

    @property
    def node_id(self) -> NodeId:
        return self._inner.node_id

    @property
    def principal(self) -> str:
        return self._inner.principal

    @property
    def peer_fingerprint(self) -> str | None:
        return self._inner.peer_fingerprint

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coroutine.close()
            raise ClientClosed("this client was closed", {})
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def post(self, request: Request, description: str) -> None:
        """Encode here, hand over to the loop thread, return at once.

        Posts are batched: one wake-up of the loop thread (and one TLS write)
        carries every request queued since the previous one, which is what
        keeps pipelined commands cheap.
        """
        frame = self._inner.encode(request)
        self._handover((request, description, frame, None))

    def _handover(self, item: _Item) -> None:
        self._pending.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._deliver_pending)

    def _deliver_pending(self) -> None:
        """On the loop thread: pass queued posts and calls to the channel, in order."""
        self._scheduled = False
        inner = self._inner
        with inner.batch():
            while self._pending:
                request, description, frame, waiter = self._pending.popleft()
                if waiter is not None:
                    inner.submit(request, frame, waiter)
                    continue
                try:
                    inner.post(request, description, frame)
                except TesseraError as exc:
                    self.tracker.failed_locally(exc, description)

    def call_async(self, request: Request) -> concurrent.futures.Future[Reply]:
        """Send now; the returned future resolves with the reply (for windows of calls)."""
        frame = self._inner.encode(request)
        if not self._thread.is_alive():
            raise ClientClosed("this client was closed", {})
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        self._handover((request, "", frame, future))
        return future

    def call(self, request: Request) -> Reply:
        """Send and block until the reply; one hop to the loop thread and one back."""
        future = self.call_async(request)
        try:
            return future.result(timeout=CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self._loop.call_soon_threadsafe(self._inner.forget, request.id)
            raise NodeUnavailable(
                f"no reply from {self.endpoint.url} in {CALL_TIMEOUT:.0f}s", {}
            ) from None

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._run(self._inner.aclose())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
