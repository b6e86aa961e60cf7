"""One FedAvg round over owners reached through injected participants, without asyncio.

Owns the collaborators a round needs, as ``Protocol``s (STYLE: injected,
typed): :class:`Participant` (one owner's dataset: ``train(task)`` sends
the round's work and returns a ``concurrent.futures.Future`` at once) and
:class:`OwnerDataset` (what a search returns: a :class:`DatasetRef` and a
way to reach it); and the step that turns a round's futures into a new
global model, :class:`PlainCollector`.  The same loop drives a client's
``FedAvg.fit()`` (futures from the synchronous client) and a trainer node's
job (futures bridged from its event loop), so both give the same bits.

A round: every participant gets its task at once (they train concurrently);
the collector waits until all have answered or the deadline passes.  An
owner that fails to answer in time, loses its connection or reports an
internal problem is *dropped* from this round (logged, recorded with its
reason) and asked again next round.  An owner that refuses the task itself
(``BAD_REQUEST``, ``NOT_FOUND``, ``PERMISSION_DENIED``...: the job is wrong,
not the owner unlucky) fails the job with that error.  Fewer answers than
the minimum raise :class:`~node.fl.job_errors.RoundFailed`.  Successful
updates are averaged in owner-index order (bit-for-bit reproducible).

**Secure aggregation hook**: :func:`collector_for` picks the collector.
With ``secure=True`` it is :class:`~node.fl.secure_rounds.SecureCollector`:
same ``run_round`` signature, but the owners secret-share their updates
among aggregation parties and only the weighted average is reconstructed.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, MutableMapping, Optional, Protocol, Sequence, Tuple

from protocol.errors import InternalError, PeerUnavailable, QuotaExceeded, TesseraError
from protocol.federated import Dropout, RoundRecord
from protocol.secagg import DEFAULT_SECAGG_PRECISION

from .aggregate import RoundResult, aggregate_round
from .job_errors import RoundFailed
from .results import LocalResult
from .wire import TrainTask, metrics_to_wire, privacy_to_wire

__all__ = [
    "DatasetRef",
    "Participant",
    "OwnerDataset",
    "RoundCollector",
    "PlainCollector",
    "collector_for",
    "is_dropout",
    "describe_failure",
]

log = logging.getLogger("tessera.fl")

_DROPOUT_ERRORS: Tuple[type, ...] = (PeerUnavailable, InternalError, QuotaExceeded, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """Where a dataset is and what it looks like (from the gateway's record)."""

    node_id: str
    url: str
    fingerprint: str
    name: str
    feature_shape: Tuple[int, ...]
    samples: int

    @property
    def label(self) -> str:
        return f"{self.node_id}/{self.name}"


class Participant(Protocol):
    """One owner's dataset as a round sees it."""

    @property
    def label(self) -> str: ...

    def train(self, task: TrainTask) -> concurrent.futures.Future[LocalResult]:
        """Send the task now; the future resolves with the owner's result or its error."""
        ...


class OwnerDataset(Protocol):
    """A dataset a job may train on: its reference, and how to reach its owner.

    ``links`` is the job's cache of open connections, shared by the job's
    datasets so that several datasets on one node share one connection.
    """

    @property
    def ref(self) -> DatasetRef: ...

    def participant(self, links: MutableMapping[str, Any]) -> Participant: ...


def is_dropout(exc: BaseException) -> bool:
    """Whether a failed answer leaves the owner out of the round (else the job fails).

    Unreachable or vanished owners, timeouts, an owner's internal error or
    full quota are dropouts; a refusal of the task itself is not.
    """
    if isinstance(exc, TesseraError) and exc.code is None:
        return True  # local failures: connection lost, client closed
    return isinstance(exc, _DROPOUT_ERRORS)


def describe_failure(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, TesseraError) else (str(exc) or type(exc).__name__)
    return " ".join(text.split())[:500]


class RoundCollector(Protocol):
    """Runs one round's tasks on the participants and returns the new global model."""

    def run_round(
        self,
        round_index: int,
        participants: Sequence[Participant],
        task_for: Callable[[int], TrainTask],
        timeout: float,
        min_participants: int,
    ) -> Tuple[RoundResult, RoundRecord]: ...


class PlainCollector:
    """Collects every owner's full update and averages them (the trainer sees each one)."""

    def run_round(
        self,
        round_index: int,
        participants: Sequence[Participant],
        task_for: Callable[[int], TrainTask],
        timeout: float,
        min_participants: int,
    ) -> Tuple[RoundResult, RoundRecord]:
        started = time.monotonic()
        futures: Dict[int, concurrent.futures.Future[LocalResult]] = {}
        dropped: List[Tuple[int, str]] = []
        for index, participant in enumerate(participants):
            try:
                futures[index] = participant.train(task_for(index))
            except Exception as exc:  # cannot even send: treat like a failed answer
                self._failed(round_index, index, participant, exc, dropped)
        remaining = max(0.0, timeout - (time.monotonic() - started))
        concurrent.futures.wait(list(futures.values()), timeout=remaining)
        results: Dict[int, LocalResult] = {}
        for index, future in futures.items():
            if not future.done():
                future.cancel()
                reason = f"no answer within the {timeout:g} s round deadline"
                log.warning("round %d: %s dropped: %s", round_index, participants[index].label, reason)
                dropped.append((index, reason))
                continue
            failure = future.exception()
            if failure is None:
                results[index] = future.result()
            else:
                self._failed(round_index, index, participants[index], failure, dropped)
        if len(results) < min_participants:
            named = [(participants[i].label, why) for i, why in sorted(dropped)]
            raise RoundFailed.for_round(round_index, len(results), min_participants, named)
        order = sorted(results)
        aggregated = aggregate_round([results[i] for i in order])
        record = RoundRecord(
            round_index,
            tuple(order),
            tuple(Dropout(i, why) for i, why in sorted(dropped)),
            aggregated.samples,
            aggregated.train_loss,
            metrics_to_wire(aggregated.heldout),
            time.monotonic() - started,
            privacy_to_wire(results),
        )
        return aggregated, record

    @staticmethod
    def _failed(round_index: int, index: int, participant: Participant, exc: BaseException,
                dropped: List[Tuple[int, str]]) -> None:
        if not is_dropout(exc):
            raise exc
        reason = describe_failure(exc)
        log.warning("round %d: %s dropped: %s", round_index, participant.label, reason)
        dropped.append((index, reason))


def collector_for(secure: bool, crypto_provider: Optional[object] = None,
                  precision: int = DEFAULT_SECAGG_PRECISION) -> RoundCollector:
    """The round collector for a job: plain FedAvg, or secure aggregation.

    With ``secure``, the owners secret-share their updates among
    ``crypto_provider`` (a node handle, or a
    :class:`~node.fl.secure_rounds.PartyLink`) and their own nodes, and only
    the weighted average is reconstructed (``precision`` fractional bits).
    """
    if secure:
        from .secure import check_precision  # secure_rounds imports this module
        from .secure_rounds import SecureCollector, as_party

        return SecureCollector(as_party(crypto_provider), check_precision(precision))
    return PlainCollector()
