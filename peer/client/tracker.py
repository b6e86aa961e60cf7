"""Bookkeeping for pipelined requests, without I/O: part of the channel core.

``put``, ``delete`` and ``command`` are posted without waiting; the node only
answers them when they fail.  The tracker remembers a description of every
posted request until a later barrier (a ``sync`` reply) proves it was
processed, records failures as they arrive, and hands them to the next
synchronisation point as the exception the node raised, naming the command.

Not thread-safe, like the :class:`~peer.client.core.ChannelCore` that owns
it: drivers serialise access to the core.  Imports :mod:`protocol` only.
"""

from __future__ import annotations

from protocol.errors import TesseraError, error_class_for
from protocol.ids import RequestId
from protocol.messages import ErrorReply

__all__ = ["RequestTracker", "AUTO_BARRIER_EVERY"]

AUTO_BARRIER_EVERY = 8192
"""Posted requests after which the client inserts a barrier to prune its records."""


def rebuild_error(reply: ErrorReply, command: str | None, peer: str) -> TesseraError:
    """The exception class the node raised, with the command and peer attached."""
    cls = error_class_for(reply.code)
    return cls(reply.message, reply.details, command=command, peer=peer)


class RequestTracker:
    """Posted-request descriptions and pending failures, for one channel."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._posted: dict[RequestId, str] = {}
        self._failures: list[TesseraError] = []

    def posted(self, request_id: RequestId, description: str) -> bool:
        """Record a posted request; True when a pruning barrier is due."""
        self._posted[request_id] = description
        return len(self._posted) % AUTO_BARRIER_EVERY == 0

    def on_error(self, reply: ErrorReply) -> None:
        """A posted request failed: keep the error for the next sync point."""
        description = self._posted.pop(reply.id, None)
        self._failures.append(rebuild_error(reply, description, self.peer))

    def barrier(self, request_id: RequestId) -> None:
        """Everything posted before ``request_id`` has been processed."""
        done = [rid for rid in self._posted if rid < request_id]
        for rid in done:
            del self._posted[rid]

    def lost(self, reason: TesseraError) -> None:
        """The connection dropped: every unconfirmed posted request may be lost."""
        for rid, description in sorted(self._posted.items()):
            cls = type(reason)
            self._failures.append(
                cls(
                    f"not confirmed before the connection dropped ({reason.message})",
                    reason.details,
                    command=description,
                    peer=self.peer,
                )
            )
        self._posted.clear()

    def failed_locally(self, exc: TesseraError, description: str) -> None:
        """A request could not even be posted; report it at the next sync point."""
        self._failures.append(exc.with_context(command=description, peer=self.peer))

    def take_failure(self) -> TesseraError | None:
        """The first pending failure (the root cause), clearing all of them."""
        if not self._failures:
            return None
        first, later = self._failures[0], len(self._failures) - 1
        self._failures.clear()
        if later:
            first.details["later_failures"] = later
            first.args = (f"{first.args[0]} (and {later} later command(s) failed)",)
        return first

    def raise_failures(self) -> None:
        failure = self.take_failure()
        if failure is not None:
            raise failure

    @property
    def outstanding(self) -> int:
        return len(self._posted)
