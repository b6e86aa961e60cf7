"""Per-principal quotas: one budget for everything a principal makes a node hold.

A principal's stored tensors and objects are counted here, and so is
everything else it can make the node hold outside the store: an unfinished
upload, an awaited delivery, frames queued behind a busy command, a trainer
job's state, a parked secure-aggregation update, a local training in
progress.  Each takes a :class:`Reservation` before it allocates and gives
it back when it completes, fails, expires or its connection closes.  One
budget and one check (:meth:`Ledger.check`), so the sum is what bounds the
node's memory, whatever mix of ways a principal uses.

Refusals are :class:`~protocol.errors.QuotaExceeded` naming the limit and
the principal's own counts (bytes stored, bytes reserved by kind), never a
value of any data.  Thread-safe (worker threads run heavy ops).  Must not
import torch, asyncio or the transport.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Callable

from protocol.errors import QuotaExceeded

from .policy import Principal

__all__ = ["Quota", "Hold", "Reservation", "Ledger", "DEFAULT_MAX_OBJECTS", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_OBJECTS = 100_000
"""Objects one principal may hold on a node by default."""

DEFAULT_MAX_BYTES = 8 * 1024**3
"""Bytes one principal may hold on a node by default (8 GiB)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-principal limits a store enforces on every new object and reservation."""

    max_objects: int = DEFAULT_MAX_OBJECTS
    max_bytes: int = DEFAULT_MAX_BYTES


class Hold(enum.Enum):
    """What a reservation holds memory for (named in QUOTA_EXCEEDED messages)."""

    UPLOAD = "unfinished uploads"
    DELIVERY = "incoming transfers"
    BACKLOG = "queued frames"
    JOB = "trainer jobs"
    SECURE_UPDATE = "parked secure-aggregation updates"
    SHARES = "secure-aggregation shares"
    DOWNLOAD = "downloads in progress"
    COMMAND = "commands running"
    HISTORY = "autograd histories"
    TRAINING = "local trainings"


class Reservation:
    """Bytes and objects of one principal's quota, held for something not (yet) stored.

    Made by :meth:`Ledger.reserve`, which refuses it (QuotaExceeded) when
    the principal's stored and reserved total would pass its quota.  It may
    grow (checked the same way) and shrink; :meth:`release` gives it all
    back and is idempotent, so every way out (completion, failure, expiry,
    connection close) may call it.  The store can turn it into the object it
    was made for in one step, so that object is never counted twice.
    """

    __slots__ = ("principal", "hold", "nbytes", "objects", "_adjust")

    def __init__(
        self,
        principal: Principal,
        hold: Hold,
        adjust: Callable[[Reservation, int, int], None],
    ) -> None:
        self.principal, self.hold = principal, hold
        self.nbytes = self.objects = 0
        self._adjust: Callable[[Reservation, int, int], None] | None = adjust

    @property
    def released(self) -> bool:
        return self._adjust is None

    def grow(self, nbytes: int, objects: int = 0) -> None:
        """Hold ``nbytes`` (and ``objects``) more; QuotaExceeded, and nothing changes, past the quota."""
        if self._adjust is None:
            raise RuntimeError("a released reservation cannot grow")
        self._adjust(self, nbytes, objects)

    def shrink(self, nbytes: int) -> None:
        """Give back ``nbytes`` of it (at most what it holds)."""
        if self._adjust is not None and nbytes > 0:
            self._adjust(self, -min(nbytes, self.nbytes), 0)

    def release(self) -> None:
        """Give all of it back (idempotent)."""
        adjust, self._adjust = self._adjust, None
        if adjust is not None and (self.nbytes or self.objects):
            adjust(self, -self.nbytes, -self.objects)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Ledger:
    """Stored and reserved bytes and objects per principal, checked against one :class:`Quota`."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self._stored: dict[Principal, tuple[int, int]] = {}
        """Per principal: (bytes, objects) in the store."""
        self._reserved: dict[Principal, dict[Hold, tuple[int, int]]] = {}
        """Per principal and kind: (bytes, objects) held by live reservations."""
        self._lock = threading.Lock()

    def check(
        self,
        principal: Principal,
        nbytes: int,
        objects: int = 1,
        hold: Hold | None = None,
    ) -> None:
        """QuotaExceeded if ``principal`` may not hold ``nbytes`` and ``objects`` more.

        ``hold`` names what asks (for the message).
        """
        stored_bytes, stored_objects = self._stored.get(principal, (0, 0))
        reserved = dict(self._reserved.get(principal, {}))
        what = "" if hold is None else f"{hold.value}: "
        held = stored_objects + sum(o for _, o in reserved.values())
        if objects > 0 and held + objects > self.quota.max_objects:
            raise QuotaExceeded(
                f"{what}at most {self.quota.max_objects} objects per principal on this node "
                f"({held} stored or awaited)",
                {"limit": self.quota.max_objects, "held": held},
            )
        pending = sum(b for b, _ in reserved.values())
        if nbytes > 0 and stored_bytes + pending + nbytes > self.quota.max_bytes:
            counted = "".join(f", {b} reserved by {h.value}" for h, (b, _) in reserved.items() if b > 0)
            raise QuotaExceeded(
                f"{what}{nbytes} more bytes would exceed the {self.quota.max_bytes}-byte quota "
                f"of this principal ({stored_bytes} stored{counted})",
                {"limit": self.quota.max_bytes, "used": stored_bytes + pending, "size": nbytes},
            )

    def reserve(self, principal: Principal, hold: Hold, nbytes: int, objects: int = 0) -> Reservation:
        """Hold ``nbytes`` and ``objects`` of ``principal``'s quota for ``hold``; QuotaExceeded past it."""
        reservation = Reservation(principal, hold, self._adjust)
        reservation.grow(nbytes, objects)
        return reservation

    def store(self, principal: Principal, nbytes: int, reservation: Reservation | None = None) -> None:
        """Count one stored object of ``nbytes``; QuotaExceeded (nothing counted) past the quota.

        ``reservation``, if given, was made for this object (or for several,
        a command's results): up to ``nbytes`` and one object of it become
        the object's, only the rest is checked, and it is released once empty.
        """
        with self._lock:
            taken = (0, 0) if reservation is None else (min(nbytes, reservation.nbytes), min(1, reservation.objects))
            self.check(principal, nbytes - taken[0], 1 - taken[1], None)
            if reservation is not None:
                self._apply(reservation, -taken[0], -taken[1])
                if not (reservation.nbytes or reservation.objects):
                    reservation.release()  # empty: only marks it released, no second lock
            stored_bytes, stored_objects = self._stored.get(principal, (0, 0))
            self._stored[principal] = (stored_bytes + nbytes, stored_objects + 1)

    def unstore(self, principal: Principal, nbytes: int, objects: int = 1) -> None:
        """Stop counting ``objects`` stored objects holding ``nbytes``."""
        with self._lock:
            stored_bytes, stored_objects = self._stored.get(principal, (0, 0))
            left = (stored_bytes - nbytes, stored_objects - objects)
            if left[1] > 0:
                self._stored[principal] = left
            else:
                self._stored.pop(principal, None)

    def usage(self, principal: Principal) -> tuple[int, int]:
        """Bytes stored and bytes reserved by ``principal`` (for logs and tests)."""
        with self._lock:
            reserved = self._reserved.get(principal, {})
            return self._stored.get(principal, (0, 0))[0], sum(b for b, _ in reserved.values())

    def _adjust(self, reservation: Reservation, nbytes: int, objects: int) -> None:
        with self._lock:
            self._apply(reservation, nbytes, objects)

    def _apply(self, reservation: Reservation, nbytes: int, objects: int) -> None:
        """Change a reservation by (``nbytes``, ``objects``), checking growth; under the lock."""
        principal, hold = reservation.principal, reservation.hold
        if nbytes > 0 or objects > 0:  # shrinking and releasing never need the check
            self.check(principal, max(nbytes, 0), max(objects, 0), hold)
        kinds = self._reserved.setdefault(principal, {})
        old_bytes, old_objects = kinds.get(hold, (0, 0))
        now = (old_bytes + nbytes, old_objects + objects)
        if now == (0, 0):
            kinds.pop(hold, None)
            if not kinds:
                del self._reserved[principal]
        else:
            kinds[hold] = now
        reservation.nbytes += nbytes
        reservation.objects += objects
