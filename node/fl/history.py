"""A federated job's history: one record per good round, and the curves people plot.

Owns :class:`History`, a sequence of the wire's
:class:`~protocol.federated.RoundRecord`\\ s (a client's ``FedAvg.fit()``
appends to it; a trainer node's ``job_status`` carries the same records).

Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, overload

from protocol.federated import RoundRecord

__all__ = ["History"]


class History(Sequence[RoundRecord]):
    """Per-round records of a job, oldest first, with the usual curves as lists."""

    def __init__(self, records: Iterable[RoundRecord] = ()) -> None:
        self._records: List[RoundRecord] = []
        self._spent: Dict[int, float] = {}
        """Per owner index, the DP budget its answers have charged so far."""
        self._epsilon: List[Optional[float]] = []
        """The :attr:`epsilon` curve, extended by :meth:`append`."""
        for record in records:
            self.append(record)

    @overload
    def __getitem__(self, index: int) -> RoundRecord: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RoundRecord]: ...

    def __getitem__(self, index: Any) -> Any:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[RoundRecord]:
        return iter(self._records)

    def append(self, record: RoundRecord) -> None:
        self._records.append(record)
        for charge in record.privacy:
            self._spent[charge.owner] = self._spent.get(charge.owner, 0.0) + charge.epsilon
        self._epsilon.append(max(self._spent.values()) if self._spent else None)

    @property
    def train_loss(self) -> List[float]:
        return [r.train_loss for r in self._records]

    @property
    def accuracy(self) -> List[Optional[float]]:
        """Held-out accuracy per round (the owners' held-out rows, sample-weighted)."""
        return [r.heldout.accuracy if r.heldout is not None else None for r in self._records]

    @property
    def heldout_loss(self) -> List[Optional[float]]:
        return [r.heldout.loss if r.heldout is not None else None for r in self._records]

    @property
    def epsilon(self) -> List[Optional[float]]:
        """Per round, the DP budget this job has spent so far on its most-charged dataset.

        The owners' own accounting (each ``train_reply`` says what it charged);
        ``None`` until an owner with DP on has answered.
        """
        return list(self._epsilon)

    @property
    def epsilon_spent(self) -> Optional[float]:
        """The last value of :attr:`epsilon` (``None`` with no rounds yet), without copying the curve."""
        return self._epsilon[-1] if self._epsilon else None

    @property
    def epsilon_remaining(self) -> List[Optional[float]]:
        """Per round, the smallest DP budget left on any participating dataset (``None``: no DP)."""
        return [min((c.remaining for c in r.privacy), default=None) for r in self._records]

    @property
    def dropped(self) -> List[Tuple[int, int, str]]:
        """Every dropout: ``(round, owner index, reason)``."""
        return [(r.round, d.owner, d.reason) for r in self._records for d in r.dropped]

    def __repr__(self) -> str:
        return f"<History {len(self)} rounds>"
