"""Aggregation protocols: how a round's updates reach the trainer, as steps the loop runs.

Owns the contract between the round loop (:mod:`node.fl.rounds`) and an
aggregation protocol, and the plain one:

- :class:`Aggregation` starts an :class:`AggregationRound` per round.  The
  round adapts each owner's task (:meth:`~AggregationRound.task`), says how
  many owners it needs (:attr:`~AggregationRound.required`), may ask
  aggregation parties something while the owners train
  (:meth:`~AggregationRound.opening`), and after training
  :meth:`~AggregationRound.collect`\\ s the updates: a generator (sans-I/O,
  as python-websockets' parsers) that yields :class:`Step`\\ s, requests
  to parties with a deadline, and is sent each step's :data:`Outcomes`
  (replies, or the errors they failed with) until it returns what it
  :class:`Collected`.  The loop sends and waits; the protocol decides.
- :class:`RoundUpdates`: what the strategy's ``aggregate_round`` gets,
  the owners' results and their weighted average.
- :class:`PlainAggregation`: owners send their full states in their
  ``train_reply``; no step; the average is :func:`node.fl.aggregate.fedavg`.
  Secure aggregation is :class:`node.fl.secure_rounds.SecureRounds`.

Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, Mapping, Optional, Protocol, Union

from protocol.ids import RequestId
from protocol.messages import Reply, Request

from .aggregate import fedavg
from .results import LocalResult
from .spec import State
from .wire import TrainTask

__all__ = [
    "Provider",
    "PROVIDER",
    "PartyKey",
    "Ask",
    "Step",
    "Outcomes",
    "RoundUpdates",
    "Collected",
    "AggregationRound",
    "Aggregation",
    "PlainAggregation",
    "PlainRound",
    "PlainUpdates",
]


class Provider(enum.Enum):
    CRYPTO_PROVIDER = "crypto_provider"


PROVIDER = Provider.CRYPTO_PROVIDER
"""The job's crypto provider, as an aggregation party."""

PartyKey = Union[int, Provider]
"""An aggregation party: :data:`PROVIDER`, or an owner index (that owner's node)."""


@dataclass(frozen=True, slots=True, eq=False)
class Ask:
    """One request to an aggregation party; the loop gives it its request id."""

    party: PartyKey
    build: Callable[[RequestId], Request]


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """Requests sent together; each not answered within ``timeout`` seconds fails as a ``TimeoutError``.

    The keys are the protocol's own (an owner index, a party's position...):
    the outcomes come back under them.
    """

    asks: Mapping[Any, Ask]
    timeout: float


Outcomes = Mapping[Any, Union[Reply, BaseException]]
"""A step's answers by the keys of its asks: the reply, or what the request failed with."""


class RoundUpdates(Protocol):
    """The updates of the owners still in a round, as the trainer may see them."""

    @property
    def results(self) -> Mapping[int, LocalResult]:
        """Each owner's answer by owner index (metrics; the state too in plain rounds)."""
        ...

    def average(self, reference: State) -> State:
        """The owners' sample-weighted average state, with ``reference``'s keys and dtypes."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class Collected:
    """What a round's aggregation ends with: the updates, and every owner left out so far."""

    updates: RoundUpdates
    dropped: Dict[int, str]


class AggregationRound(Protocol):
    """One round of an aggregation protocol (sans-I/O: it only says what to send)."""

    @property
    def required(self) -> int:
        """Owners the round needs at every step (at least the strategy's minimum)."""
        ...

    def task(self, task: TrainTask) -> TrainTask:
        """What an owner is asked to do, given what the strategy configured."""
        ...

    def opening(self) -> Optional[Step]:
        """Requests to send with the training tasks; their outcomes go to :meth:`collect`."""
        ...

    def collect(
        self, results: Mapping[int, LocalResult], dropped: Mapping[int, str], opened: Outcomes,
    ) -> Generator[Step, Outcomes, Collected]:
        """From the trained owners' results to the round's updates, step by step.

        Raises :class:`~node.fl.job_errors.RoundFailed` (too few owners left),
        :class:`~node.fl.job_errors.AggregationFailed` or an owner's refusal.
        """
        ...


class Aggregation(Protocol):
    """How a job's updates are aggregated; starts one :class:`AggregationRound` per round."""

    @property
    def needs_parties(self) -> bool:
        """Whether owners' nodes act as aggregation parties (participants must offer ``party()``)."""
        ...

    def start_round(self, round_index: int, min_results: int, timeout: float) -> AggregationRound:
        """Round ``round_index``, which needs ``min_results`` answers and has ``timeout`` seconds to train."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class PlainUpdates:
    """Full states in the clear: the trainer averages them itself."""

    results: Mapping[int, LocalResult]

    def average(self, reference: State) -> State:
        """FedAvg in owner-index order (floating-point sums are not associative: the order is the rule)."""
        order = sorted(self.results)
        return fedavg([self.results[i].state for i in order], [self.results[i].samples for i in order])


class PlainAggregation:
    """Plain FedAvg's aggregation: every owner's full update comes back in its reply."""

    needs_parties = False

    def start_round(self, round_index: int, min_results: int, timeout: float) -> PlainRound:
        return PlainRound(min_results)


@dataclass(frozen=True, slots=True)
class PlainRound:
    """A plain round: the tasks as configured, no opening, no step after training."""

    required: int

    def task(self, task: TrainTask) -> TrainTask:
        return task

    def opening(self) -> Optional[Step]:
        return None

    def collect(
        self, results: Mapping[int, LocalResult], dropped: Mapping[int, str], opened: Outcomes,
    ) -> Generator[Step, Outcomes, Collected]:
        yield from ()  # no step: the states came with the results
        return Collected(PlainUpdates(dict(results)), dict(dropped))
