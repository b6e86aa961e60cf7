"""Connections dialed in the background, so that a job opens all of them at once.

A federated job run from this process needs one connection per owner node.
Dialed lazily at each owner's first task, they were opened one after the
other, and one slow owner (a busy machine, a long TLS handshake) delayed
every owner after it.  :class:`BackgroundDial` starts the dial at once, on a
thread of its own, and :meth:`~BackgroundDial.handle` waits for it where the
connection is first needed.  A dial that failed is started again when it is
next asked for (the owner is dropped from that round and asked again in the
next, as before).  Runs in the user's process.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Callable

from node.fl.links import close_quietly
from node.client.handle import NodeHandle

__all__ = ["BackgroundDial"]


class BackgroundDial:
    """A connection being opened by ``connect`` on its own thread."""

    def __init__(self, connect: Callable[[], NodeHandle], label: str) -> None:
        self._connect = connect
        self._label = label
        self._lock = threading.Lock()
        self._closed = False
        self._future: concurrent.futures.Future[NodeHandle] = self._start()

    def _start(self) -> concurrent.futures.Future[NodeHandle]:
        future: concurrent.futures.Future[NodeHandle] = concurrent.futures.Future()
        thread = threading.Thread(target=self._dial, args=(future,), name=f"tessera-dial-{self._label}", daemon=True)
        thread.start()
        return future

    def _dial(self, future: concurrent.futures.Future[NodeHandle]) -> None:
        try:
            handle = self._connect()
        except BaseException as exc:  # handed to whoever waits, in its thread
            future.set_exception(exc)
            return
        with self._lock:
            closed = self._closed
            if not closed:
                future.set_result(handle)
        if closed:  # the job ended while this dial was under way
            close_quietly(handle)  # on the dial's thread: nobody to raise to
            future.cancel()

    def handle(self) -> NodeHandle:
        """The open connection, waiting for the dial (bounded by its open time-out).

        Raises what the dial raised (``NodeUnavailable``, ``TrustError``...);
        the next call dials again.
        """
        with self._lock:
            future = self._future
        try:
            return future.result()
        except BaseException:
            with self._lock:
                if self._future is future and not self._closed:
                    self._future = self._start()
            raise

    def close(self) -> None:
        """Close the connection if it opened, or as soon as it opens.

        Raises what closing the open connection raised (the job closing its
        links logs and drops it: :func:`node.fl.links.close_quietly`).
        """
        with self._lock:
            self._closed = True
            future = self._future
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().close()
