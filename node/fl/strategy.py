"""Federated strategies: what each round asks of the owners, and what becomes of their answers.

Owns :class:`Strategy` (Flower's split, around one round loop:
:meth:`~Strategy.configure_round` decides the round's participants and
their tasks, :meth:`~Strategy.aggregate_round` gets the round's updates
and its failures, handed over separately, and returns the new global
state), :class:`RoundConfig` and :class:`FedAvgStrategy` (McMahan et al.
2017: every owner trains from the global state; the new state is the
sample-weighted average of theirs).

A strategy does no I/O and never waits: the loop (:mod:`node.fl.rounds`)
sends the tasks and gathers the answers, the dropout policy
(:mod:`node.fl.failures`) says who is left out, and the aggregation
protocol (:mod:`node.fl.aggregation`: plain, or secure aggregation) says
how the updates reach the trainer, so one strategy runs under either.
A new strategy (FedProx's proximal term, a server-side optimiser such as
FedAdam, a DP variant) is a new class with these two methods.

Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from .aggregate import RoundResult, round_result
from .aggregation import RoundUpdates
from .plan import JobPlan
from .spec import State
from .wire import TrainTask

__all__ = ["RoundConfig", "Strategy", "FedAvgStrategy"]


@dataclass(frozen=True, slots=True, eq=False)
class RoundConfig:
    """One round as a strategy configured it."""

    round: int
    state: State
    """The global state the round starts from."""
    tasks: Mapping[int, TrainTask]
    """Owner index -> its task; an owner left out sits the round out."""
    min_results: int
    """Answers the round needs; fewer fail it (:class:`~node.fl.job_errors.RoundFailed`)."""


class Strategy(Protocol):
    """Decides each round's tasks and turns the round's updates into the next global state."""

    def configure_round(self, round_index: int, state: State) -> RoundConfig: ...

    def aggregate_round(
        self, config: RoundConfig, updates: RoundUpdates, failures: Mapping[int, str],
    ) -> RoundResult:
        """The new global state and the round's metrics.

        ``updates`` holds the owners still in the round (never empty: the
        loop fails a round with too few); ``failures`` the reason of every
        owner left out, by owner index.
        """
        ...


class FedAvgStrategy:
    """Federated averaging: every owner trains from the global state; their average is the next one."""

    def __init__(self, plan: JobPlan) -> None:
        self.plan = plan

    def configure_round(self, round_index: int, state: State) -> RoundConfig:
        plan = self.plan
        tasks = {
            index: TrainTask.create(plan.spec, state, plan.hyper, plan.hyper.seed, round_index, index, plan.job_id)
            for index in range(len(plan.owners))
        }
        return RoundConfig(round_index, state, tasks, plan.min_participants)

    def aggregate_round(
        self, config: RoundConfig, updates: RoundUpdates, failures: Mapping[int, str],
    ) -> RoundResult:
        results = updates.results
        return round_result(updates.average(config.state), [results[i] for i in sorted(results)])
