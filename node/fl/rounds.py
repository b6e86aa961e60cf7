"""The round loop: the one loop a client's ``FedAvg.fit()`` and a trainer node's jobs run.

Owns :func:`run_rounds`, :func:`run_round`, :class:`Links` (what a job's
rounds send through) and :func:`aggregation_for` (plain or secure, as the
plan says).  The loop only sends and waits, through injected collaborators
(:mod:`node.fl.links`: participants whose ``train`` returns a
``concurrent.futures.Future`` at once, party links whose ``call`` does the
same): the synchronous client's futures and those a trainer node bridges
from its event loop look alike here, so both give the same bits.

A round:

1. the strategy configures it (:meth:`~node.fl.strategy.Strategy.configure_round`:
   participants and tasks) and the aggregation protocol starts its round
   (:meth:`~node.fl.aggregation.Aggregation.start_round`);
2. every task goes out at once (the owners train concurrently), with the
   protocol's opening requests; the loop waits until all have answered or
   the round's deadline passes;
3. the failures go to the dropout policy (:mod:`node.fl.failures`): an
   owner's refusal fails the job, the rest are dropouts; too few answers
   fail the round;
4. the protocol's steps (:meth:`~node.fl.aggregation.AggregationRound.collect`)
   run, each sent at once and waited for with its deadline;
5. the strategy aggregates (:meth:`~node.fl.strategy.Strategy.aggregate_round`:
   the updates and the failures, separately) into the next global state.

Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Callable, Dict, Generator, Hashable, Mapping, Optional, Sequence, Tuple, TypeVar, Union, cast

from protocol.federated import Dropout, RoundRecord
from protocol.messages import Reply

from .aggregate import RoundResult
from .aggregation import Aggregation, AggregationRound, Ask, Collected, Outcomes, PlainAggregation, Provider, Step
from .failures import dropouts, require
from .job_errors import JobError
from .links import Participant, PartyLink, SecureParticipant
from .plan import JobPlan
from .results import LocalResult
from .secure_rounds import SecureRounds
from .spec import State
from .strategy import Strategy
from .wire import TrainTask, metrics_to_wire, privacy_to_wire

__all__ = ["run_rounds", "run_round", "aggregation_for", "Links"]

log = logging.getLogger("tessera.fl")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def aggregation_for(plan: JobPlan) -> Aggregation:
    """The job's aggregation protocol: secure aggregation if the plan has its settings, else plain."""
    if plan.secure is None:
        return PlainAggregation()
    return SecureRounds(plan.secure, plan.owners)


class Links:
    """What a job's rounds send through: its participants (owner-index order) and the crypto provider."""

    def __init__(self, participants: Sequence[Participant], provider: Optional[PartyLink] = None) -> None:
        self.participants = list(participants)
        self.provider = provider

    def check_parties(self, labels: Sequence[str]) -> None:
        """Every participant's node can act as an aggregation party (else the job cannot run securely)."""
        for participant, label in zip(self.participants, labels):
            if not callable(getattr(participant, "party", None)):
                raise JobError.for_reason(f"{label} cannot take part in secure aggregation (no link to its node)")

    def party(self, key: Union[int, Provider]) -> PartyLink:
        if isinstance(key, Provider):
            # Only a secure plan's steps ask the provider, and both callers give a secure plan its provider
            # (FedAvg: as_party refuses None; a trainer node: the plan's crypto_provider).
            assert self.provider is not None
            return self.provider
        return cast(SecureParticipant, self.participants[key]).party()

    def ask(self, asks: Mapping[K, Ask]) -> Dict[K, concurrent.futures.Future[Reply]]:
        """Send every request now; one that cannot even be sent (a dead connection) is a failed future."""
        futures: Dict[K, concurrent.futures.Future[Reply]] = {}
        for key, ask in asks.items():
            try:
                futures[key] = self.party(ask.party).call(ask.build)
            except Exception as exc:
                failed: concurrent.futures.Future[Reply] = concurrent.futures.Future()
                failed.set_exception(exc)
                futures[key] = failed
        return futures

    def exchange(self, step: Step) -> Outcomes:
        """A step's requests, sent together, and their outcomes within its deadline."""
        return _settle(self.ask(step.asks), step.timeout, f"no answer within {step.timeout:g} s")


def run_rounds(
    plan: JobPlan,
    links: Links,
    strategy: Strategy,
    aggregation: Aggregation,
    on_round: Callable[[RoundRecord, State], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> State:
    """Run every round; ``on_round`` gets each good round's record and new state.

    Raises :class:`~node.fl.job_errors.RoundFailed` (too few answers), the
    error an owner refused the task with, or :class:`~node.fl.job_errors.JobError`
    (a secure job whose participants cannot be parties); the state passed
    to the last ``on_round`` is then the last good one.
    """
    labels = [ref.label for ref in plan.owners]
    if aggregation.needs_parties:
        links.check_parties(labels)
    state = plan.state
    for round_index in range(plan.rounds):
        if should_stop():
            break
        result, record = run_round(round_index, state, links, strategy, aggregation,
                                   float(plan.round_timeout), labels)
        state = result.state
        on_round(record, state)
    return state


def run_round(
    round_index: int,
    state: State,
    links: Links,
    strategy: Strategy,
    aggregation: Aggregation,
    timeout: float,
    labels: Sequence[str],
) -> Tuple[RoundResult, RoundRecord]:
    """One round (the module docstring's steps): the new global state and the round's record."""
    started = time.monotonic()
    config = strategy.configure_round(round_index, state)
    protocol = aggregation.start_round(round_index, config.min_results, timeout)
    opening = protocol.opening()
    opened = links.ask(opening.asks) if opening is not None else {}
    results, dropped = _train(round_index, links, protocol, config.tasks, started, timeout, labels)
    require(round_index, len(results), protocol.required, dropped, labels)
    answered = _settle(opened, opening.timeout, f"no answer within {opening.timeout:g} s") if opening else {}
    collected = _drive(protocol.collect(results, dropped, answered), links)
    _log_dropped(round_index, {i: why for i, why in collected.dropped.items() if i not in dropped}, labels)
    aggregated = strategy.aggregate_round(config, collected.updates, collected.dropped)
    return aggregated, _record(round_index, collected, aggregated, time.monotonic() - started)


def _train(
    round_index: int, links: Links, protocol: AggregationRound, tasks: Mapping[int, TrainTask],
    started: float, timeout: float, labels: Sequence[str],
) -> Tuple[Dict[int, LocalResult], Dict[int, str]]:
    """Send every task, wait for the answers until the round's deadline; the results and the dropouts."""
    sent: Dict[int, concurrent.futures.Future[LocalResult]] = {}
    dropped: Dict[int, str] = {}
    for index, task in tasks.items():
        try:
            sent[index] = links.participants[index].train(protocol.task(task))
        except Exception as exc:  # cannot even send: like a failed answer (a refusal fails the job at once)
            dropped.update(_log_dropped(round_index, dropouts({index: exc}), labels))
    remaining = timeout - (time.monotonic() - started)
    answers = _settle(sent, remaining, f"no answer within the {timeout:g} s round deadline")
    results = {i: a for i, a in answers.items() if not isinstance(a, BaseException)}
    failed = {i: a for i, a in answers.items() if isinstance(a, BaseException)}
    dropped.update(_log_dropped(round_index, dropouts(failed), labels))
    return results, dropped


def _settle(futures: Mapping[K, concurrent.futures.Future[T]], timeout: float,
            late: str) -> Dict[K, Union[T, BaseException]]:
    """Every future's result or exception; those not done in time are cancelled, as ``TimeoutError(late)``."""
    concurrent.futures.wait(list(futures.values()), timeout=max(0.0, timeout))
    outcome: Dict[K, Union[T, BaseException]] = {}
    for key, future in futures.items():
        if not future.done():
            future.cancel()
            outcome[key] = TimeoutError(late)
            continue
        failure = future.exception()
        outcome[key] = failure if failure is not None else future.result()
    return outcome


def _drive(steps: Generator[Step, Outcomes, Collected], links: Links) -> Collected:
    """Run an aggregation protocol's steps: send each, hand its outcomes back, until it returns."""
    outcomes: Optional[Outcomes] = None
    while True:
        try:
            step = next(steps) if outcomes is None else steps.send(outcomes)
        except StopIteration as done:
            return cast(Collected, done.value)
        outcomes = links.exchange(step)


def _log_dropped(round_index: int, reasons: Mapping[int, str], labels: Sequence[str]) -> Mapping[int, str]:
    for index, reason in reasons.items():
        log.warning("round %d: %s dropped: %s", round_index, labels[index], reason)
    return reasons


def _record(round_index: int, collected: Collected, aggregated: RoundResult, seconds: float) -> RoundRecord:
    results = collected.updates.results
    return RoundRecord(
        round_index,
        tuple(sorted(results)),
        tuple(Dropout(i, why) for i, why in sorted(collected.dropped.items())),
        aggregated.samples,
        aggregated.train_loss,
        metrics_to_wire(aggregated.heldout),
        seconds,
        privacy_to_wire(results),
    )
