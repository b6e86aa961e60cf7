"""The synchronous client channel: a private event loop thread per connection.

:class:`ThreadedChannel` owns a private event loop in a daemon thread
(explicitly, per channel) and forwards to an
:class:`~node.transport.channel.AsyncChannel` running there, so scripts and
notebooks (whose own loop may already be running) get blocking calls that
never touch the caller's loop.  Requests are encoded in the caller's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any, Coroutine, Protocol, TypeVar

from protocol.codec import Frame
from protocol.errors import TesseraError
from protocol.ids import NodeId
from protocol.messages import Reply, Request

from ..errors import ClientClosed
from ..transport.channel import AsyncChannel, Endpoint
from ..transport.tracker import RequestTracker

__all__ = ["Channel", "ThreadedChannel"]

T = TypeVar("T")


class Channel(Protocol):
    """What a client handle needs: ordered posts and blocking calls."""

    tracker: RequestTracker

    @property
    def node_id(self) -> NodeId: ...

    @property
    def principal(self) -> str: ...

    def post(self, request: Request, description: str) -> None: ...

    def call(self, request: Request) -> Reply: ...

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
        frame = self._inner.encode(request)
        self._loop.call_soon_threadsafe(self._post_or_record, request, description, frame)

    def _post_or_record(self, request: Request, description: str, frame: Frame) -> None:
        try:
            self._inner.post(request, description, frame)
        except TesseraError as exc:
            self.tracker.failed_locally(exc, description)

    def call(self, request: Request) -> Reply:
        frame = self._inner.encode(request)
        return self._run(self._inner.call(request, frame))

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
