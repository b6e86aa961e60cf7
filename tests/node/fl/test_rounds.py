"""The round loop with in-process owners: plain FedAvg bit for bit, dropouts, refusals, deadlines, progress."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
from torch import nn

from node.fl.aggregation import PlainAggregation
from node.fl.datasets import make_dataset
from node.fl.fedavg import FedAvg
from node.fl.hyperparameters import Hyperparameters
from node.fl.job_errors import JobError, RoundFailed
from node.fl.plan import JobPlan
from node.fl.reference import plain_fedavg
from node.fl.rounds import Links, run_rounds
from node.fl.secure_rounds import SecureRounds
from node.fl.spec import State, model_to_spec
from node.fl.strategy import FedAvgStrategy
from protocol.errors import BadRequest, InternalError, PeerUnavailable
from protocol.federated import RoundRecord
from protocol.secagg import SecureJob

from .inprocess import Network, Owner, OwnerData

Data = Tuple[torch.Tensor, torch.Tensor]


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 2))


def _owners(data: Data, count: int = 3) -> List[Owner]:
    x, y = data
    network = Network()
    return [
        Owner(network.node(f"hospital_{i}"), make_dataset(f"part{i}", x[i::count], y[i::count], heldout_fraction=0))
        for i in range(count)
    ]


def _plan(owners: List[Owner], rounds: int = 2, min_participants: int = 1, timeout: float = 60.0) -> JobPlan:
    spec, state = model_to_spec(_model())
    hyper = Hyperparameters(lr=0.1, local_epochs=1, batch_size=32, loss="cross_entropy", seed=3)  # type: ignore[arg-type]
    return JobPlan(spec, state, hyper, rounds, tuple(o.ref for o in owners), min_participants, timeout)


def _run(plan: JobPlan, owners: List[Owner]) -> Tuple[State, List[RoundRecord]]:
    records: List[RoundRecord] = []
    state = run_rounds(plan, Links(owners), FedAvgStrategy(plan), PlainAggregation(),
                       lambda record, _: records.append(record))
    return state, records


def test_the_loop_equals_plain_fedavg_bit_for_bit(breast_cancer: Data) -> None:
    """run_rounds with FedAvgStrategy and plain aggregation gives node.fl.plain_fedavg's exact state."""
    owners = _owners(breast_cancer)
    plan = _plan(owners, rounds=3)
    state, records = _run(plan, owners)
    reference = plain_fedavg(_model(), [(o.dataset.features, o.dataset.labels) for o in owners], plan.hyper, 3)
    assert list(state) == list(reference.state)
    assert all(torch.equal(state[k], reference.state[k]) for k in state)
    assert [r.participants for r in records] == [(0, 1, 2)] * 3 and all(not r.dropped for r in records)
    assert records[0].samples == sum(o.dataset.train_samples for o in owners)


def test_unlucky_owners_are_dropped_and_asked_again(breast_cancer: Data) -> None:
    """A lost owner, an owner's internal error and one that cannot even be sent to are dropouts with reasons."""
    owners = _owners(breast_cancer, 4)
    owners[1].fail = PeerUnavailable("hospital_1 vanished", {})
    owners[2].fail = InternalError("internal error", {})
    owners[3].raise_on_send = ConnectionResetError("reset")
    plan = _plan(owners, rounds=2)
    _, records = _run(plan, owners)
    assert [r.participants for r in records] == [(0,), (0,)]
    assert [(d.owner, d.reason) for d in records[0].dropped] == [
        (1, "hospital_1 vanished"), (2, "internal error"), (3, "reset"),
    ]
    assert len(owners[1].tasks) == 2  # asked again in the next round


def test_an_owner_past_the_deadline_is_dropped(breast_cancer: Data) -> None:
    """An owner that never answers is left out when the round's deadline passes."""
    owners = _owners(breast_cancer, 2)
    owners[1].silent = True
    _, records = _run(_plan(owners, rounds=1, timeout=0.2), owners)
    assert records[0].participants == (0,)
    assert records[0].dropped[0].reason == "no answer within the 0.2 s round deadline"


def test_a_refusal_fails_the_job_with_the_owners_error(breast_cancer: Data) -> None:
    """An owner refusing the task (BAD_REQUEST) fails the job with that error, not a dropout."""
    owners = _owners(breast_cancer, 2)
    owners[1].fail = BadRequest("no such layer", {})
    with pytest.raises(BadRequest, match="no such layer"):
        _run(_plan(owners), owners)


def test_too_few_answers_fail_the_round_naming_the_dropouts(breast_cancer: Data) -> None:
    """Fewer answers than min_participants raise RoundFailed, naming who dropped and why."""
    owners = _owners(breast_cancer, 3)
    owners[2].fail = PeerUnavailable("gone", {})
    with pytest.raises(RoundFailed, match="round 0 failed: 2 of the required 3 owners answered.*part2: gone"):
        _run(_plan(owners, min_participants=3), owners)


def test_should_stop_ends_the_job_between_rounds(breast_cancer: Data) -> None:
    """A job told to stop runs no further round and returns the last good state."""
    owners = _owners(breast_cancer, 2)
    plan = _plan(owners, rounds=5)
    records: List[RoundRecord] = []
    run_rounds(plan, Links(owners), FedAvgStrategy(plan), PlainAggregation(),
               lambda record, _: records.append(record), should_stop=lambda: len(records) == 2)
    assert len(records) == 2


def test_fedavg_fit_shows_progress_through_the_datasets_observer(breast_cancer: Data) -> None:
    """FedAvg(progress=True) asks its datasets for an observer, shows every round on it and closes it."""
    datasets = [OwnerData(o) for o in _owners(breast_cancer, 2)]
    job = FedAvg(_model(), datasets, rounds=2, loss="cross_entropy", seed=3, progress=True)
    history = job.fit()
    observer = datasets[0].observers[0]
    assert observer.rounds == 2 and observer.closed
    assert [set(s) for s in observer.shown] == [{"loss"}] * 2  # no held-out rows: no accuracy
    assert observer.shown[-1]["loss"] == f"{history[-1].train_loss:.4f}"
    quiet = [OwnerData(o) for o in _owners(breast_cancer, 2)]
    FedAvg(_model(), quiet, rounds=1, loss="cross_entropy", progress=False).fit()
    assert all(not d.observers for d in quiet)


def test_secure_jobs_need_participants_that_are_parties(breast_cancer: Data) -> None:
    """A secure job over participants without a link to their node is refused before any round."""
    owners = _owners(breast_cancer, 2)

    class Bare:
        def __init__(self, owner: Owner) -> None:
            self.owner = owner

        def train(self, task: object) -> object:
            raise AssertionError("nothing may be sent")

    plan = _plan(owners)
    secure = SecureRounds(SecureJob(owners[0].node.address, 20), plan.owners)
    with pytest.raises(JobError, match="part0 cannot take part in secure aggregation"):
        run_rounds(plan, Links([Bare(o) for o in owners], owners[0].node), FedAvgStrategy(plan), secure,
                   lambda record, _: None)
