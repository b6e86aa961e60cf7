"""Attack: a hostile trainer rebuilds a data owner's training rows from one ``train`` reply.

The model's first layer has one neuron per threshold on feature 0 (weight
1 on that feature, bias ``-t_j``, thresholds ascending), then ReLU and a
small second layer; one epoch, one batch of every row, lr 1, MSE.  A row
with ``t_j < x_0 <= t_(j+1)`` is the only difference between neurons j and
j+1, so ``(grad W_j - grad W_(j+1)) / (grad b_j - grad b_(j+1))`` is that
row, exactly (issue 11: every row back within 2e-3).  The trainer learns
the gradients from the returned state: ``(before - after) / lr``.

One owner node over TLS with a user token holds the same 40 rows as three
datasets: ``guarded`` with no policy of its own (the safe defaults: DP-SGD),
``open`` whose operator turned DP off (``dp = false``: the attack works,
so it is real) and ``strict`` (secure aggregation only, a model cap, an
allowed-layer set).  On code without owner policies the node refuses the
unknown flags and every test here fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

import node
from node.client.fl.jobs import DatasetPointer
from node.fl import FedAvg
from protocol.errors import PermissionDenied
from protocol.records import DatasetSummary
from tests.support import NodeProcess, start_node

ROWS, FEATURES, NEURONS = 40, 3, 400
TOLERANCE = 1e-2
"""A row counts as recovered when every feature is within this of the true value."""


def _rows() -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(7)
    x = generator.uniform(-1, 1, (ROWS, FEATURES)).astype(np.float32)
    x[:, 0] = generator.permutation(np.linspace(-1.95, 1.95, ROWS)).astype(np.float32)  # one row per bin
    return x, generator.integers(0, 2, ROWS)


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("attack-training")
    x, y = _rows()
    np.savez(root / "rows.npz", x=x, y=y)
    (root / "open.json").write_text(json.dumps({"dp": False}))
    (root / "strict.toml").write_text(
        'secure_aggregation_min_owners = 3\nmax_model_elements = 1000\nallowed_layers = ["Linear", "Sigmoid"]\n'
    )
    data = str(root / "rows.npz")
    proc = start_node(
        root, "hospital", "--dataset-heldout", "0",
        "--dataset", f"guarded={data}", "--dataset", f"open={data}", "--dataset", f"strict={data}",
        "--dataset-policy", f"open={root / 'open.json'}", "--dataset-policy", f"strict={root / 'strict.toml'}",
    )
    yield proc
    assert proc.stop() == 0, proc.stderr()


def _pointer(proc: NodeProcess, name: str) -> DatasetPointer:
    summary = DatasetSummary(name, (), "", (ROWS, FEATURES), ROWS)
    return DatasetPointer(proc.node_id, proc.url, proc.fingerprint, summary,
                          lambda: node.connect(proc.url, cafile=proc.cafile))


def _attack_model() -> torch.nn.Sequential:
    first, second = torch.nn.Linear(FEATURES, NEURONS), torch.nn.Linear(NEURONS, 1)
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, 0] = 1.0  # every neuron reads feature 0...
        first.bias.copy_(-torch.linspace(-2.5, 2.5, NEURONS))  # ...and fires above its own threshold
        second.weight.fill_(0.05)
        second.bias.zero_()
    return torch.nn.Sequential(first, torch.nn.ReLU(), second)


def _attack(proc: NodeProcess, name: str) -> tuple[torch.Tensor, FedAvg]:
    """One hostile round (lr 1, one epoch, one batch of every row); the rows it rebuilds."""
    model = _attack_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    job = FedAvg(model, [_pointer(proc, name)], rounds=1, local_epochs=1, batch_size=ROWS, lr=1.0, loss="mse",
                 progress=False)
    job.fit()
    grad_w = before["0.weight"].double() - job.state["0.weight"].double()
    grad_b = before["0.bias"].double() - job.state["0.bias"].double()
    step_w, step_b = grad_w[:-1] - grad_w[1:], grad_b[:-1] - grad_b[1:]
    isolated = step_b.abs() > 1e-9
    return step_w[isolated] / step_b[isolated, None], job


def _errors(candidates: torch.Tensor) -> torch.Tensor:
    """Per true row, the distance (largest feature error) to the closest rebuilt row."""
    rows = torch.tensor(_rows()[0], dtype=torch.float64)
    return (rows[:, None, :] - candidates[None]).abs().amax(-1).amin(1)


def test_without_dp_the_attack_rebuilds_every_row(owner: NodeProcess) -> None:
    """With DP explicitly off, one train reply gives every row back (the attack is real)."""
    candidates, job = _attack(owner, "open")
    errors = _errors(candidates)
    assert int((errors < TOLERANCE).sum()) >= ROWS - 2, errors
    assert job.history.epsilon == [None]  # no DP, no budget: nothing to report


def test_under_the_default_policy_the_rebuilt_rows_are_far_off_and_repeats_run_out(owner: NodeProcess) -> None:
    """Default policy (DP-SGD, epsilon 10): the same attack recovers (almost) nothing, costs budget,
    and the owner refuses it once the budget would be exceeded."""
    spent = 0.0
    for _ in range(3):  # epsilon 4.7, 7.1, 9.0 after 1, 2, 3 full-batch steps (sigma 1, delta 1e-5; RDP)
        candidates, job = _attack(owner, "guarded")
        errors = _errors(candidates)
        assert int((errors < TOLERANCE).sum()) <= 2, errors
        assert float(errors.median()) > 0.1
        charged = job.history.epsilon[0]
        assert charged is not None and charged > 0
        spent += charged
        remaining = job.history.epsilon_remaining[0]
        assert remaining is not None and remaining == pytest.approx(10.0 - spent, rel=1e-6)
    with pytest.raises(PermissionDenied, match="privacy budget of dataset 'guarded' exhausted"):
        _attack(owner, "guarded")


def test_a_plain_train_on_a_secure_only_dataset_is_refused(owner: NodeProcess) -> None:
    """secure_aggregation_min_owners: a plain train (the trainer would see the update) is refused."""
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 1))
    job = FedAvg(model, [_pointer(owner, "strict")], rounds=1, batch_size=ROWS, lr=1.0, loss="mse", progress=False)
    with pytest.raises(PermissionDenied, match="secure_aggregation_min_owners") as caught:
        job.fit()
    assert caught.value.details.get("rule") == "secure_aggregation_min_owners"
    assert len(job.history) == 0


def test_models_beyond_the_limits_are_refused(owner: NodeProcess) -> None:
    """A layer outside allowed_layers and a model above max_model_elements are refused, naming the rule."""
    with pytest.raises(PermissionDenied, match="allowed_layers") as caught:
        _attack(owner, "strict")  # ReLU is not allowed there
    assert caught.value.details.get("rule") == "allowed_layers"
    linear = torch.nn.Sequential(torch.nn.Linear(FEATURES, NEURONS), torch.nn.Linear(NEURONS, 1))
    job = FedAvg(linear, [_pointer(owner, "strict")], rounds=1, batch_size=ROWS, lr=1.0, loss="mse", progress=False)
    with pytest.raises(PermissionDenied, match="max_model_elements") as caught:
        job.fit()
    assert caught.value.details == {"dataset": "strict", "rule": "max_model_elements", "limit": 1000}
