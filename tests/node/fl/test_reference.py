"""The plain-PyTorch FedAvg reference: accuracy near centralised training, and the
spec-based path (FedAvgStrategy's tasks + train_locally + its aggregate_round) reproduces it bit for bit."""

from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from node.fl.aggregation import PlainUpdates
from node.fl.datasets import make_dataset
from node.fl.hyperparameters import Hyperparameters, OptimizerName
from node.fl.links import DatasetRef
from node.fl.local import train_locally
from node.fl.plan import JobPlan
from node.fl.reference import plain_fedavg
from node.fl.seeds import owner_seed
from node.fl.spec import model_to_spec
from node.fl.strategy import FedAvgStrategy

Data = Tuple[torch.Tensor, torch.Tensor]


def _accuracy(model: nn.Module, state: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _centralised(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> Dict[str, torch.Tensor]:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            batch = order[start : start + 32]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.state_dict()


def test_fedavg_over_three_owners_matches_centralised_accuracy(breast_cancer: Data) -> None:
    """FedAvg over breast cancer split in 3 reaches centralised accuracy within 2 points."""
    whole = make_dataset("all", *breast_cancer, heldout_fraction=0.2, split_seed=0)
    x, y = whole.features, whole.labels
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    hyper = Hyperparameters(lr=0.05, momentum=0.9, local_epochs=5, batch_size=32, seed=0)
    federated = plain_fedavg(model, [(x[i::3], y[i::3]) for i in range(3)], hyper, rounds=8)
    central = _centralised(model, x, y, epochs=40, lr=0.05)
    fed_accuracy = _accuracy(model, federated.state, whole.heldout_features, whole.heldout_labels)
    central_accuracy = _accuracy(model, central, whole.heldout_features, whole.heldout_labels)
    assert fed_accuracy > 0.93
    assert abs(fed_accuracy - central_accuracy) <= 0.02
    assert federated.train_losses[-1] < federated.train_losses[0]
    assert not any(torch.equal(initial[k], federated.state[k]) for k in initial)


@pytest.mark.parametrize("optimizer", [OptimizerName.SGD, OptimizerName.ADAM])
def test_spec_path_reproduces_reference_bit_for_bit(breast_cancer: Data, optimizer: OptimizerName) -> None:
    """FedAvgStrategy's tasks (owner_seed seeds) + train_locally + its aggregate_round give the reference's exact state."""
    x, y = breast_cancer
    owners = [make_dataset(f"owner{i}", x[i::3], y[i::3], heldout_fraction=0.2, split_seed=i) for i in range(3)]
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(30, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    momentum = 0.9 if optimizer is OptimizerName.SGD else 0.0
    hyper = Hyperparameters(lr=0.01, local_epochs=2, batch_size=16, optimizer=optimizer, momentum=momentum, seed=7)
    reference = plain_fedavg(model, [(d.features, d.labels) for d in owners], hyper, rounds=3)

    spec, state = model_to_spec(model)
    refs = tuple(DatasetRef("n", "wss://n", "fp", d.info.name, (30,), d.train_samples) for d in owners)
    strategy = FedAvgStrategy(JobPlan(spec, state, hyper, 3, refs, 3, 60.0))
    for round_index in range(3):
        config = strategy.configure_round(round_index, state)
        assert [t.hyper.seed for t in config.tasks.values()] == [owner_seed(7, round_index, i) for i in range(3)]
        results = {i: train_locally(t.spec, t.state, owners[i], t.hyper) for i, t in config.tasks.items()}
        state = strategy.aggregate_round(config, PlainUpdates(results), {}).state
    assert list(state) == list(reference.state)
    assert all(torch.equal(state[k], reference.state[k]) for k in state)


def test_owner_seeds_are_pinned_and_distinct() -> None:
    """owner_seed is a fixed function (the networked layer relies on it) and separates rounds and owners."""
    assert owner_seed(0, 0, 0) == 0x708073C47B99C258
    assert owner_seed(7, 2, 1) == 0x26C6140DCC6C21DF
    seeds = {owner_seed(5, r, i) for r in range(10) for i in range(10)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError):
        owner_seed(-1, 0, 0)
