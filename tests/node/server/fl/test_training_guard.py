"""The owner's guard: budget charged before training and kept on disk, each outcome audited."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from node.fl.datasets import Dataset, make_dataset
from node.fl.errors import DpUnsupportedLayer, PrivacyBudgetExhausted
from node.fl.hyperparameters import Hyperparameters, LossName
from node.fl.policy import DpPolicy, PolicyRefused, PolicyRule, TrainingPolicy
from node.fl.spec import model_to_spec
from node.fl.wire import TrainTask
from node.server.fl.audit import AUDIT_FILE, AuditOutcome, read_audit
from node.server.fl.guard import LEDGER_FILE, TrainingGuard
from protocol.errors import BadRequest


def _dataset(rows: int = 64) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(rows, 4, generator=generator)
    return make_dataset("d", features, (features[:, 0] > 0).long(), heldout_fraction=0)


def _task(*layers: torch.nn.Module, batch: int = 16) -> TrainTask:
    spec, state = model_to_spec(torch.nn.Sequential(*(layers or (torch.nn.Linear(4, 2),))))
    return TrainTask(spec, state, Hyperparameters(0.1, batch_size=batch, loss=LossName.CROSS_ENTROPY), 0, 0, 0,
                     job_id="job-1")


def test_a_charge_is_on_disk_before_training_and_survives_a_new_guard(tmp_path: Path) -> None:
    """Charges add up to what is spent; a fresh guard on the same directory sees the same budget left."""
    dataset, policy = _dataset(), TrainingPolicy(dp=DpPolicy(epsilon=20.0))
    guard = TrainingGuard(tmp_path)
    guard.add(dataset, policy)
    first = guard.charge(dataset, _task())
    assert first is not None and 0 < first.epsilon and first.remaining == pytest.approx(20.0 - first.epsilon)
    assert (tmp_path / LEDGER_FILE).exists()
    second = guard.charge(dataset, _task())
    assert second is not None and second.remaining < first.remaining
    again = TrainingGuard(tmp_path)
    again.add(dataset, policy)
    assert again.summary(dataset).epsilon_remaining == pytest.approx(second.remaining)


def test_past_the_budget_nothing_is_charged(tmp_path: Path) -> None:
    """A training that does not fit is PrivacyBudgetExhausted (PERMISSION_DENIED) and leaves the ledger as it was."""
    dataset = _dataset()
    guard = TrainingGuard(tmp_path)
    guard.add(dataset, TrainingPolicy(dp=DpPolicy(epsilon=0.5)))
    before = guard.summary(dataset).epsilon_remaining
    with pytest.raises(PrivacyBudgetExhausted, match="exhausted"):
        guard.charge(dataset, _task(batch=64))
    assert guard.summary(dataset).epsilon_remaining == before == 0.5


def test_without_dp_nothing_is_charged_and_the_last_batch_keeps_min_batch(tmp_path: Path) -> None:
    """DP off: no charge, plain training (metrics present) with min_batch applied; DP on: metrics withheld."""
    dataset = _dataset(40)
    guard = TrainingGuard(tmp_path)
    guard.add(dataset, TrainingPolicy(dp=None, min_batch=16))
    task = _task(batch=16)
    assert guard.charge(dataset, task) is None
    result = guard.fit(dataset, task, None)
    assert result.privacy is None and result.train_loss > 0 and result.samples == 40
    private = TrainingGuard(None)
    private.add(dataset)
    charge = private.charge(dataset, task)
    result = private.fit(dataset, task, charge)
    assert result.privacy == charge and result.train_loss == 0.0 and result.heldout is None


def test_a_model_dp_sgd_cannot_train_is_refused_before_the_charge(tmp_path: Path) -> None:
    """BatchNorm mixes a batch's rows: prepare refuses it with DP on, so no budget is spent on it."""
    dataset = _dataset()
    guard = TrainingGuard(tmp_path)
    guard.add(dataset)
    with pytest.raises(DpUnsupportedLayer):
        guard.prepare(dataset, _task(torch.nn.Linear(4, 2), torch.nn.BatchNorm1d(2)))
    assert not (tmp_path / LEDGER_FILE).exists()
    assert isinstance(DpUnsupportedLayer("x"), BadRequest)


def test_every_outcome_is_audited(tmp_path: Path) -> None:
    """Trained (with its charge), refused by a rule, refused by the budget, failed (the code only)."""
    dataset, task = _dataset(), _task()
    guard = TrainingGuard(tmp_path)
    guard.add(dataset, TrainingPolicy(dp=DpPolicy(epsilon=10.0)))
    with guard.audited(dataset, "user:bob", task, secure=False) as audit:
        audit.charge = guard.charge(dataset, task)
    with pytest.raises(PolicyRefused):
        guard.refuse(dataset, "user:eve", task, secure=True,
                     refusal=PolicyRefused.for_rule("d", PolicyRule.MIN_BATCH, "batch_size 8 is below 16", 16))
    with pytest.raises(PrivacyBudgetExhausted):
        with guard.audited(dataset, "user:eve", task, secure=False) as audit:
            for _ in range(50):
                audit.charge = guard.charge(dataset, task)
    with pytest.raises(BadRequest):
        with guard.audited(dataset, "user:eve", task, secure=False):
            raise BadRequest("labels 0.25 do not fit", {})
    entries = list(read_audit(tmp_path / AUDIT_FILE))
    assert [(e.principal, e.outcome, e.reason) for e in entries] == [
        ("user:bob", AuditOutcome.TRAINED, None),
        ("user:eve", AuditOutcome.REFUSED, "min_batch"),
        ("user:eve", AuditOutcome.REFUSED, "epsilon"),
        ("user:eve", AuditOutcome.FAILED, "BAD_REQUEST"),
    ]
    trained = entries[0]
    assert trained.epsilon is not None and trained.epsilon_remaining == pytest.approx(10.0 - trained.epsilon)
    assert (trained.job_id, trained.round, trained.samples) == ("job-1", 0, 64)
    assert trained.spec_sha256 == task.spec.sha256() and len(trained.spec_sha256) == 64
    assert "0.25" not in (tmp_path / AUDIT_FILE).read_text()  # an error's message never reaches the trail
