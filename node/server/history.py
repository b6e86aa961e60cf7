"""Autograd histories charged to their principal's quota.

A result computed from a tensor that requires grad keeps its history on the
node (:mod:`node.server.ops`), and the history keeps alive every tensor its
backward needs: inputs, and intermediates no command ever stored.  Deleting
an object does not free what a later result's history saved of it, so
without a charge a principal could hold any amount of memory with a few
small objects (a chain ``b = a * a; c = b * b; ...``, deleting each step).

While a command that uses a tensor requiring grad runs,
:meth:`HistoryCharges.charging` installs torch's saved-tensor hooks: each
tensor autograd saves is first reserved in the principal's quota
(:class:`~node.server.quota.Hold` ``HISTORY``; ``QuotaExceeded`` refuses the
command) and kept in a :class:`_Saved` holder that gives the reservation
back when the history lets it go (after a ``grad`` command, or once the
results using it are deleted).  A saved tensor that is also a stored object
is counted twice while both live: the charge errs on the safe side.

Holders are freed wherever Python frees them (any thread, possibly inside
the cyclic garbage collector while the ledger's lock is held), so a freed
holder only queues its reservation; the next charged command, or
:meth:`HistoryCharges.settle`, gives the queued ones back.  Imports torch
and this package's store and quota; nothing of the session or transport.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Iterator

import torch

from .quota import Hold, Reservation
from .store import ObjectStore, Principal, storage_bytes

__all__ = ["HistoryCharges"]


class _Saved:
    """A tensor autograd saved, with the reservation that pays for it."""

    __slots__ = ("tensor", "_reservation", "_freed")

    def __init__(self, tensor: torch.Tensor, reservation: Reservation, freed: collections.deque[Reservation]) -> None:
        self.tensor = tensor
        self._reservation = reservation
        self._freed = freed

    def __del__(self) -> None:
        self._freed.append(self._reservation)  # never the ledger's lock here: see the module docstring


class HistoryCharges:
    """Charges for the autograd histories of one store's objects."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._freed: collections.deque[Reservation] = collections.deque()

    @contextlib.contextmanager
    def charging(self, principal: Principal) -> Iterator[None]:
        """Within: every tensor autograd saves is reserved in ``principal``'s quota first."""
        self.settle()
        store, freed = self._store, self._freed

        def pack(tensor: torch.Tensor) -> _Saved:
            return _Saved(tensor, store.reserve(principal, Hold.HISTORY, storage_bytes(tensor)), freed)

        def unpack(saved: _Saved) -> torch.Tensor:
            return saved.tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield

    def settle(self) -> None:
        """Give back the reservations of the saved tensors histories have let go."""
        while self._freed:
            try:
                reservation = self._freed.popleft()
            except IndexError:  # drained by another thread meanwhile
                return
            reservation.release()
