"""Secure aggregation's protocol driven by the round loop, with in-process parties: steps, dropouts, failures."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
from torch import nn

from node.fl.aggregation import PlainAggregation
from node.fl.datasets import make_dataset
from node.fl.hyperparameters import Hyperparameters
from node.fl.job_errors import AggregationFailed, RoundFailed
from node.fl.plan import JobPlan
from node.fl.rounds import Links, run_rounds
from node.fl.secure import average_error_bound
from node.fl.secure_rounds import SecureRounds
from node.fl.spec import State, model_to_spec
from node.fl.strategy import FedAvgStrategy
from protocol.errors import BadRequest, PeerUnavailable
from protocol.federated import RoundRecord
from protocol.secagg import SecaggSetupRequest, SecaggSplitRequest, SecaggSumRequest, SecureJob

from .inprocess import Network, Node, Owner

Data = Tuple[torch.Tensor, torch.Tensor]
PRECISION = 20


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 4), nn.ReLU(), nn.Linear(4, 2))


def _setup(data: Data, count: int = 3) -> Tuple[Network, Node, List[Owner]]:
    x, y = data
    network = Network()
    owners = [
        Owner(network.node(f"hospital_{i}"), make_dataset(f"part{i}", x[i::count], y[i::count], heldout_fraction=0))
        for i in range(count)
    ]
    return network, network.node("charlie"), owners


def _run(owners: List[Owner], provider: Node | None, rounds: int = 1,
         min_participants: int = 1) -> Tuple[State, List[RoundRecord]]:
    spec, state = model_to_spec(_model())
    hyper = Hyperparameters(lr=0.1, batch_size=32, loss="cross_entropy", seed=5)  # type: ignore[arg-type]
    secure = None if provider is None else SecureJob(provider.address, PRECISION)
    plan = JobPlan(spec, state, hyper, rounds, tuple(o.ref for o in owners), min_participants, 60.0, secure)
    aggregation = PlainAggregation() if provider is None else SecureRounds(plan.secure, plan.owners)  # type: ignore[arg-type]
    records: List[RoundRecord] = []
    final = run_rounds(plan, Links(owners, provider), FedAvgStrategy(plan), aggregation,
                       lambda record, _: records.append(record))
    return final, records


def test_a_secure_round_equals_plain_fedavg_within_the_precision(breast_cancer: Data) -> None:
    """Setup, split, check and sum on every party, in that order; the average is plain FedAvg's to 2^-21."""
    network, charlie, owners = _setup(breast_cancer)
    state, records = _run(owners, charlie)
    kinds = [type(request).__name__ for request in network.calls]
    assert kinds == ["SecaggSetupRequest"] * 4 + ["SecaggSplitRequest"] * 3 + ["SecaggSumRequest"] * 8
    assert all(task.secure is not None and task.secure.precision == PRECISION for o in owners for task in o.tasks)
    assert records[0].participants == (0, 1, 2)
    plain_owners = _setup(breast_cancer)[2]
    plain, plain_records = _run(plain_owners, None)
    assert records[0].samples == plain_records[0].samples and records[0].train_loss == plain_records[0].train_loss
    bound = average_error_bound(3, records[0].samples, PRECISION) + 1e-7
    assert all(torch.allclose(state[k], plain[k], rtol=0, atol=bound) for k in state)


def test_an_owner_node_that_cannot_be_set_up_is_left_out_with_its_owners(breast_cancer: Data) -> None:
    """secagg_setup failing on an owner's node drops that owner; the round goes on without it."""
    network, charlie, owners = _setup(breast_cancer)
    owners[2].node.fail[SecaggSetupRequest] = PeerUnavailable("hospital_2 went away", {})
    _, records = _run(owners, charlie)
    assert records[0].participants == (0, 1)
    assert [(d.owner, d.reason) for d in records[0].dropped] == [(2, "hospital_2 went away")]
    sums = [r for r in network.calls if isinstance(r, SecaggSumRequest)]
    assert {r.owners for r in sums} == {(0, 1)}


def test_an_owner_whose_split_fails_is_left_out_and_a_refused_split_fails_the_job(breast_cancer: Data) -> None:
    """A split lost to the network is a dropout; a split the owner refuses fails the job with its error."""
    _, charlie, owners = _setup(breast_cancer)
    owners[0].node.fail[SecaggSplitRequest] = TimeoutError("slow")
    _, records = _run(owners, charlie)
    assert records[0].participants == (1, 2) and records[0].dropped[0].owner == 0
    _, charlie, owners = _setup(breast_cancer)
    owners[1].node.fail[SecaggSplitRequest] = BadRequest("no update for this round", {})
    with pytest.raises(BadRequest, match="no update for this round"):
        _run(owners, charlie)


def test_an_owner_whose_share_is_missing_at_a_party_is_left_out(breast_cancer: Data) -> None:
    """The check step finds owner 1's share missing at charlie: owner 1 is left out before anything is summed."""
    _, charlie, owners = _setup(breast_cancer)
    charlie.never_receives.add(1)
    _, records = _run(owners, charlie)
    assert records[0].participants == (0, 2)
    assert records[0].dropped[0].reason == "its share is missing at aggregation party charlie"


def test_party_failures_fail_the_round(breast_cancer: Data) -> None:
    """The crypto provider failing its setup, or a party losing shares it had, raise AggregationFailed."""
    _, charlie, owners = _setup(breast_cancer)
    charlie.fail[SecaggSetupRequest] = PeerUnavailable("charlie is down", {})
    with pytest.raises(AggregationFailed, match="round 0 failed: aggregation party charlie failed: charlie is down"):
        _run(owners, charlie)
    _, charlie, owners = _setup(breast_cancer)
    owners[0].node.lose_shares = True
    with pytest.raises(AggregationFailed, match="aggregation party hospital_0 lost shares it had"):
        _run(owners, charlie)


def test_a_sum_over_one_owner_is_never_made(breast_cancer: Data) -> None:
    """With one owner left a secure round fails (its sum would be that owner's update), whatever the minimum."""
    network, charlie, owners = _setup(breast_cancer, 2)
    owners[1].fail = PeerUnavailable("gone", {})
    with pytest.raises(RoundFailed, match="round 0 failed: 1 of the required 2 owners answered"):
        _run(owners, charlie, min_participants=1)
    assert not any(isinstance(r, (SecaggSplitRequest, SecaggSumRequest)) for r in network.calls)
