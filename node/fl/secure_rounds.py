"""Secure aggregation, the trainer's side: an aggregation protocol the round loop drives.

Owns :class:`SecureRounds` (the :class:`~node.fl.aggregation.Aggregation`
of a job with ``secure_aggregation=True``), :class:`SecureRound` (one
round, sans-I/O: it yields the requests to send and is handed their
outcomes) and :class:`SecureUpdates` (what the strategy gets: the owners'
metrics and the parties' summed shares, decoded into the weighted average
by :func:`node.fl.secure.decode_average`).  The trainer never receives an
owner's update, in the clear or as a share: only metrics and, from every
aggregation party, a sum over two or more owners.

A round (``PROTOCOL.md`` section 19.4), each step with a deadline:

1. ``train`` with a ``secure`` section to every owner (the round's random
   id and the precision, :meth:`SecureRound.task`) and, meanwhile,
   ``secagg_setup`` on the crypto provider (:meth:`SecureRound.opening`).
   Owners keep their encoded update and answer metrics only; failures are
   dropouts exactly as in plain FedAvg (the loop and
   :mod:`node.fl.failures`).
2. The aggregation parties are the crypto provider plus every node of an
   owner that answered.  ``secagg_setup`` on the owner nodes; an owner
   node that cannot be set up is left out with its owners.
3. ``secagg_split`` to every remaining owner: it secret-shares its update
   among the parties, straight to them; an owner whose split fails is
   left out.
4. ``secagg_sum`` with ``check`` on every party: owners whose share is
   missing anywhere are left out (no party has summed anything yet).
5. ``secagg_sum`` on every party, once: the trainer adds the parties'
   summed shares (:class:`SecureUpdates`).

Fewer than ``max(2, min_participants)`` owners at any step raise
:class:`~node.fl.job_errors.RoundFailed` (a sum over one owner would be
that owner's update); a party that fails in steps 4-5 (or the crypto
provider in step 1) raises :class:`~node.fl.job_errors.AggregationFailed`.
Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Dict, Generator, List, Mapping, Sequence, Tuple, TypeVar

import torch

from protocol.errors import BadRequest
from protocol.ids import NodeId
from protocol.messages import AckReply
from protocol.secagg import (
    ROUND_ID_BYTES,
    AggregationParty,
    SecaggSetupRequest,
    SecaggSplitRequest,
    SecaggSumReply,
    SecaggSumRequest,
    SecureJob,
    SecureTrain,
    ShareSender,
)

from .aggregation import PROVIDER, Ask, Collected, Outcomes, PartyKey, Provider, Step
from .failures import describe_failure, dropouts, require
from .job_errors import AggregationFailed
from .links import DatasetRef
from .results import LocalResult
from .secure import decode_average, reconstruct_sum
from .spec import State
from .wire import TrainTask

__all__ = ["SecureRounds", "SecureRound", "SecureUpdates", "AGGREGATION_TIMEOUT"]

AGGREGATION_TIMEOUT = 60.0
"""Seconds each aggregation step (setup, split, check, sum) may take after training."""

R = TypeVar("R")


@dataclass(frozen=True, slots=True, eq=False)
class SecureUpdates:
    """The owners' metrics and every party's summed share of their weighted updates."""

    results: Mapping[int, LocalResult]
    party_sums: Tuple[Mapping[str, torch.Tensor], ...]
    precision: int

    def average(self, reference: State) -> State:
        samples = sum(self.results[i].samples for i in sorted(self.results))
        return decode_average(reconstruct_sum(self.party_sums), reference, samples, self.precision)


class SecureRounds:
    """Secure aggregation among the crypto provider and the owners' nodes, round after round."""

    needs_parties = True

    def __init__(self, settings: SecureJob, owners: Sequence[DatasetRef]) -> None:
        self.settings = settings
        self.owners = tuple(owners)
        self.senders = tuple(ShareSender(i, NodeId(r.node_id), r.fingerprint) for i, r in enumerate(self.owners))
        """Every owner as a share sender, in owner-index order (each round's ``secagg_setup``)."""
        self.labels = tuple(r.label for r in self.owners)
        """Every owner's label, in owner-index order (a failed round names its dropouts by them)."""

    def start_round(self, round_index: int, min_results: int, timeout: float) -> SecureRound:
        """A round with a fresh random id (``ROUND_ID_BYTES`` bytes of OS randomness)."""
        return SecureRound(round_index, self, secrets.token_bytes(ROUND_ID_BYTES), max(2, min_results), timeout)


class SecureRound:
    """One secure round's steps (see the module docstring); yields requests, never sends them."""

    def __init__(self, round_index: int, job: SecureRounds, round_id: bytes, required: int, timeout: float) -> None:
        self.round_index = round_index
        self.settings = job.settings
        self.owners = job.owners
        self.senders = job.senders
        self._labels = job.labels
        self.round_id = round_id
        self.required = required
        """Owners needed at every step: a sum over one owner would be its update."""
        self.keep = timeout + 4 * AGGREGATION_TIMEOUT
        """Seconds the parties keep the round: its training and every aggregation step."""

    def task(self, task: TrainTask) -> TrainTask:
        return replace(task, secure=SecureTrain(self.round_id, self.settings.precision))

    def opening(self) -> Step:
        return Step({PROVIDER: self._setup(PROVIDER)}, AGGREGATION_TIMEOUT)

    def collect(
        self, results: Mapping[int, LocalResult], dropped: Mapping[int, str], opened: Outcomes,
    ) -> Generator[Step, Outcomes, Collected]:
        kept, left = dict(results), dict(dropped)
        self._answer(PROVIDER, opened[PROVIDER], AckReply)

        nodes = self._owner_nodes(kept)
        outcomes = yield Step({key: self._setup(index) for key, index in nodes.items()}, AGGREGATION_TIMEOUT)
        for key, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                del nodes[key]
                on_node = [i for i in sorted(kept) if self._node(i) == key]
                self._leave_out(kept, left, dropouts(dict.fromkeys(on_node, outcome)))
        self._require(kept, left)

        parties: List[PartyKey] = [PROVIDER, *nodes.values()]
        addresses = tuple(self._address(p) for p in parties)
        outcomes = yield Step({i: self._split(i, addresses) for i in sorted(kept)}, AGGREGATION_TIMEOUT)
        failed = {i: o for i, o in outcomes.items() if isinstance(o, BaseException)}
        self._leave_out(kept, left, dropouts(failed))
        self._require(kept, left)

        checks = yield from self._sums(parties, kept, check=True)
        for party, reply in zip(parties, checks):
            where = f"its share is missing at aggregation party {self._address(party).node}"
            self._leave_out(kept, left, {i: where for i in reply.missing if i in kept})
        self._require(kept, left)

        sums = yield from self._sums(parties, kept, check=False)
        for party, reply in zip(parties, sums):
            if reply.missing:
                raise AggregationFailed.for_party(self.round_index, self._address(party).node, "lost shares it had")
        return Collected(SecureUpdates(kept, tuple(r.sum for r in sums), self.settings.precision), left)

    # -- steps ----------------------------------------------------------------

    def _setup(self, party: PartyKey) -> Ask:
        round_id, senders, keep = self.round_id, self.senders, self.keep
        return Ask(party, lambda rid: SecaggSetupRequest(rid, round_id, senders, keep))

    def _split(self, owner: int, addresses: Tuple[AggregationParty, ...]) -> Ask:
        round_id = self.round_id
        return Ask(owner, lambda rid: SecaggSplitRequest(rid, round_id, owner, addresses))

    def _sums(self, parties: Sequence[PartyKey], kept: Mapping[int, LocalResult],
              check: bool) -> Generator[Step, Outcomes, List[SecaggSumReply]]:
        round_id, owners = self.round_id, tuple(sorted(kept))
        ask = {n: Ask(p, lambda rid: SecaggSumRequest(rid, round_id, owners, check)) for n, p in enumerate(parties)}
        outcomes = yield Step(ask, AGGREGATION_TIMEOUT)
        return [self._answer(party, outcomes[n], SecaggSumReply) for n, party in enumerate(parties)]

    def _owner_nodes(self, kept: Mapping[int, LocalResult]) -> Dict[Tuple[str, str], int]:
        """One party per answering owner's node (its first owner index), the provider's node excluded."""
        provider = (self.settings.crypto_provider.node, self.settings.crypto_provider.fingerprint)
        nodes: Dict[Tuple[str, str], int] = {}
        for index in sorted(kept):
            key = self._node(index)
            if key != provider and key not in nodes:
                nodes[key] = index
        return nodes

    def _node(self, index: int) -> Tuple[str, str]:
        return (self.owners[index].node_id, self.owners[index].fingerprint)

    def _address(self, party: PartyKey) -> AggregationParty:
        return self.settings.crypto_provider if isinstance(party, Provider) else self.owners[party].party

    def _answer(self, party: PartyKey, outcome: object, kind: type[R]) -> R:
        """The party's reply of ``kind``; a failure fails the round (no dropout possible)."""
        who = self._address(party).node
        if isinstance(outcome, BaseException):
            raise AggregationFailed.for_party(self.round_index, who, f"failed: {describe_failure(outcome)}")
        if not isinstance(outcome, kind):
            raise BadRequest(f"{who} answered with {type(outcome).__name__}, not {kind.__name__}", {})
        return outcome

    @staticmethod
    def _leave_out(kept: Dict[int, LocalResult], left: Dict[int, str], reasons: Mapping[int, str]) -> None:
        for index, reason in reasons.items():
            kept.pop(index, None)
            left[index] = reason

    def _require(self, kept: Mapping[int, LocalResult], left: Mapping[int, str]) -> None:
        require(self.round_index, len(kept), self.required, left, self._labels)
