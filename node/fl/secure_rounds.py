"""One secure-aggregation round: the trainer's side, without asyncio.

Owns :class:`SecureCollector`, the :class:`~node.fl.rounds.RoundCollector`
that :func:`~node.fl.rounds.collector_for` returns for
``secure_aggregation=True``, and the collaborators it needs as
``Protocol``\\ s: :class:`PartyLink` (a node answering the ``secagg_*``
kinds; ``call`` returns a ``concurrent.futures.Future`` of the reply, error
replies already raised as typed errors) and :class:`SecureParticipant` (a
round participant that also names its owner node and reaches it as a party).

A round (``PROTOCOL.md`` section 19.4), each wait with a deadline:

1. ``train`` with a ``secure`` section to every owner (the round's random
   id and the precision) and, meanwhile, ``secagg_setup`` on the crypto
   provider.  Owners keep their encoded update and answer metrics only;
   failures are dropouts exactly as in plain FedAvg.
2. The aggregation parties are the crypto provider plus every node of an
   owner that answered.  ``secagg_setup`` on the owner nodes; an owner node
   that cannot be set up is left out with its owners.
3. ``secagg_split`` to every remaining owner: it secret-shares its update
   among the parties, straight to them; an owner whose split fails is
   left out.
4. ``secagg_sum`` with ``check`` on every party: owners whose share is
   missing anywhere are left out (no party has summed anything yet).
5. ``secagg_sum`` on every party, once: the trainer adds the parties'
   summed shares and decodes the weighted average
   (:func:`node.fl.secure.decode_average`).

Fewer than ``max(2, min_participants)`` owners at any step raise
:class:`~node.fl.job_errors.RoundFailed` (a sum over one owner would be
that owner's update); a party that fails in steps 4-5 (or the crypto
provider in step 1-2) raises :class:`~node.fl.job_errors.AggregationFailed`.
The trainer only ever receives metrics and per-party sums over two or more
owners.  Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import secrets
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Protocol, Sequence, Tuple, TypeVar, cast

from protocol.errors import BadRequest
from protocol.federated import Dropout, RoundRecord
from protocol.ids import NodeId, RequestId
from protocol.messages import AckReply, Reply, Request
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

from .aggregate import RoundResult, weighted_metrics
from .job_errors import AggregationFailed, JobError, RoundFailed
from .results import LocalResult
from .rounds import DatasetRef, Participant, describe_failure, is_dropout
from .secure import decode_average, reconstruct_sum
from .wire import TrainTask, metrics_to_wire, privacy_to_wire

__all__ = ["PartyLink", "SecureParticipant", "SecureCollector", "AGGREGATION_TIMEOUT", "as_party"]

log = logging.getLogger("tessera.fl")

AGGREGATION_TIMEOUT = 60.0
"""Seconds each aggregation step (setup, split, check, sum) may take after training."""

R = TypeVar("R")


class PartyLink(Protocol):
    """A node serving the ``secagg_*`` kinds, as the trainer reaches it."""

    @property
    def address(self) -> AggregationParty: ...

    def call(self, build: Callable[[RequestId], Request]) -> concurrent.futures.Future[Reply]:
        """Send ``build(request_id)``; the future raises the typed error of an error reply."""
        ...


class SecureParticipant(Participant, Protocol):
    """A participant whose owner node also serves as an aggregation party."""

    @property
    def ref(self) -> DatasetRef: ...

    def party(self) -> PartyLink: ...


def as_party(crypto_provider: object) -> PartyLink:
    """The crypto provider as a party: a :class:`PartyLink`, or a node handle offering ``secagg_party()``."""
    if crypto_provider is None:
        raise JobError.for_reason("secure_aggregation=True needs a crypto_provider node (an aggregation party)")
    make = getattr(crypto_provider, "secagg_party", None)
    link = make() if callable(make) else crypto_provider
    if not callable(getattr(link, "call", None)) or not isinstance(getattr(link, "address", None), AggregationParty):
        raise JobError.for_reason(
            f"crypto_provider must be a node handle (node.connect / grid.connect), got {type(crypto_provider).__name__}"
        )
    return cast(PartyLink, link)


def _wait(futures: Dict[Any, concurrent.futures.Future[R]], timeout: float) -> Dict[Any, R | BaseException]:
    """Every future's result or exception; those not done in time are cancelled as TimeoutError."""
    concurrent.futures.wait(list(futures.values()), timeout=max(0.0, timeout))
    outcome: Dict[Any, R | BaseException] = {}
    for key, future in futures.items():
        if not future.done():
            future.cancel()
            outcome[key] = TimeoutError(f"no answer within {timeout:g} s")
            continue
        exc = future.exception()
        outcome[key] = exc if exc is not None else future.result()
    return outcome


def _call(party: PartyLink, build: Callable[[RequestId], Request]) -> concurrent.futures.Future[Reply]:
    """``party.call``, with a failure to even send (a dead connection) as a failed future."""
    try:
        return party.call(build)
    except Exception as exc:
        failed: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        failed.set_exception(exc)
        return failed


def _expect(reply: Any, kind: type[R], who: str) -> R:
    if not isinstance(reply, kind):
        raise BadRequest(f"{who} answered with {type(reply).__name__}, not {kind.__name__}", {})
    return reply


class SecureCollector:
    """Secure aggregation of a round's updates among the crypto provider and the owner nodes."""

    def __init__(self, crypto_provider: PartyLink, precision: int) -> None:
        self.provider = crypto_provider
        self.settings = SecureJob(crypto_provider.address, precision)

    def run_round(
        self,
        round_index: int,
        participants: Sequence[Participant],
        task_for: Callable[[int], TrainTask],
        timeout: float,
        min_participants: int,
    ) -> Tuple[RoundResult, RoundRecord]:
        started = time.monotonic()
        parts = [self._secure(p) for p in participants]
        need = max(2, min_participants)
        round_id = secrets.token_bytes(ROUND_ID_BYTES)
        section = SecureTrain(round_id, self.settings.precision)
        senders = tuple(ShareSender(i, NodeId(p.ref.node_id), p.ref.fingerprint) for i, p in enumerate(parts))
        keep = timeout + 4 * AGGREGATION_TIMEOUT
        provider_setup = self._setup(self.provider, round_id, senders, keep)
        reference = task_for(0).state
        dropped: List[Tuple[int, str]] = []
        futures: Dict[int, concurrent.futures.Future[LocalResult]] = {}
        for index, part in enumerate(parts):
            try:
                futures[index] = part.train(replace(task_for(index), secure=section))
            except Exception as exc:  # cannot even send: like a failed answer
                self._drop(round_index, parts, index, exc, dropped)
        results: Dict[int, LocalResult] = {}
        for index, outcome in _wait(futures, timeout - (time.monotonic() - started)).items():
            if isinstance(outcome, BaseException):
                self._drop(round_index, parts, index, outcome, dropped)
            else:
                results[index] = outcome
        self._enough(round_index, parts, results, need, dropped)
        self._party_answer(round_index, self.provider, provider_setup, AckReply)

        nodes = self._owner_parties(round_index, parts, results, round_id, senders, keep, dropped)
        self._enough(round_index, parts, results, need, dropped)
        parties = [self.provider, *nodes.values()]
        addresses = tuple(p.address for p in parties)

        def split(owner: int) -> Callable[[RequestId], Request]:
            return lambda rid: SecaggSplitRequest(rid, round_id, owner, addresses)

        splits = {i: _call(parts[i].party(), split(i)) for i in sorted(results)}
        for index, answer in _wait(splits, AGGREGATION_TIMEOUT).items():
            if isinstance(answer, BaseException):
                self._drop(round_index, parts, index, answer, dropped, results)
        self._enough(round_index, parts, results, need, dropped)

        for party, reply in zip(parties, self._ask_sums(round_index, parties, round_id, results, check=True)):
            for index in reply.missing:
                if index in results:
                    reason = f"its share is missing at aggregation party {party.address.node}"
                    self._drop(round_index, parts, index, BadRequest(reason, {}), dropped, results, dropout=True)
        self._enough(round_index, parts, results, need, dropped)
        sums = self._ask_sums(round_index, parties, round_id, results, check=False)
        for party, reply in zip(parties, sums):
            if reply.missing:
                raise AggregationFailed.for_party(round_index, party.address.node, "lost shares it had")
        order = sorted(results)
        samples = sum(results[i].samples for i in order)
        state = decode_average(reconstruct_sum([r.sum for r in sums]), reference, samples, self.settings.precision)
        train_loss = sum(results[i].train_loss * results[i].samples for i in order) / samples
        heldout = weighted_metrics([results[i].heldout for i in order])
        record = RoundRecord(
            round_index, tuple(order), tuple(Dropout(i, why) for i, why in sorted(dropped)),
            samples, train_loss, metrics_to_wire(heldout), time.monotonic() - started,
            privacy_to_wire({i: results[i] for i in order}),
        )
        return RoundResult(state, samples, train_loss, heldout), record

    # -- steps ----------------------------------------------------------------

    @staticmethod
    def _secure(participant: Participant) -> SecureParticipant:
        if not callable(getattr(participant, "party", None)) or not hasattr(participant, "ref"):
            raise JobError.for_reason(
                f"{participant.label} cannot take part in secure aggregation (no link to its node)"
            )
        return participant  # type: ignore[return-value]

    @staticmethod
    def _setup(party: PartyLink, round_id: bytes, senders: Tuple[ShareSender, ...],
               keep: float) -> concurrent.futures.Future[Reply]:
        return _call(party, lambda rid: SecaggSetupRequest(rid, round_id, senders, keep))

    def _owner_parties(
        self, round_index: int, parts: Sequence[SecureParticipant], results: Dict[int, LocalResult],
        round_id: bytes, senders: Tuple[ShareSender, ...], keep: float, dropped: List[Tuple[int, str]],
    ) -> Dict[Tuple[str, str], PartyLink]:
        """Set up every answering owner's node (one party per node); leave out nodes that fail."""
        provider = (self.provider.address.node, self.provider.address.fingerprint)
        nodes: Dict[Tuple[str, str], PartyLink] = {}
        for index in sorted(results):
            key = (parts[index].ref.node_id, parts[index].ref.fingerprint)
            if key != provider and key not in nodes:
                nodes[key] = parts[index].party()
        setups = {key: self._setup(link, round_id, senders, keep) for key, link in nodes.items()}
        for key, outcome in _wait(setups, AGGREGATION_TIMEOUT).items():
            if isinstance(outcome, BaseException):
                del nodes[key]
                for index in [i for i in sorted(results) if (parts[i].ref.node_id, parts[i].ref.fingerprint) == key]:
                    self._drop(round_index, parts, index, outcome, dropped, results)
        return nodes

    def _ask_sums(self, round_index: int, parties: Sequence[PartyLink], round_id: bytes,
                  results: Dict[int, LocalResult], check: bool) -> List[SecaggSumReply]:
        owners = tuple(sorted(results))
        asks = {
            n: _call(party, lambda rid: SecaggSumRequest(rid, round_id, owners, check))
            for n, party in enumerate(parties)
        }
        outcomes = _wait(asks, AGGREGATION_TIMEOUT)
        return [self._party_answer(round_index, parties[n], outcomes[n], SecaggSumReply) for n in range(len(parties))]

    @staticmethod
    def _party_answer(round_index: int, party: PartyLink, outcome: Any, kind: type[R]) -> R:
        """The party's reply of ``kind``; a failure fails the round (no dropout possible)."""
        if isinstance(outcome, concurrent.futures.Future):
            outcome = _wait({0: outcome}, AGGREGATION_TIMEOUT)[0]
        if isinstance(outcome, BaseException):
            raise AggregationFailed.for_party(round_index, party.address.node, f"failed: {describe_failure(outcome)}")
        return _expect(outcome, kind, party.address.node)

    @staticmethod
    def _drop(round_index: int, parts: Sequence[Participant], index: int, exc: BaseException,
              dropped: List[Tuple[int, str]], results: Dict[int, LocalResult] | None = None,
              dropout: bool = False) -> None:
        if not dropout and not is_dropout(exc):
            raise exc
        reason = describe_failure(exc)
        log.warning("round %d: %s dropped: %s", round_index, parts[index].label, reason)
        dropped.append((index, reason))
        if results is not None:
            results.pop(index, None)

    @staticmethod
    def _enough(round_index: int, parts: Sequence[Participant], results: Dict[int, LocalResult], need: int,
                dropped: List[Tuple[int, str]]) -> None:
        if len(results) < need:
            named = [(parts[i].label, why) for i, why in sorted(dropped)]
            raise RoundFailed.for_round(round_index, len(results), need, named)
