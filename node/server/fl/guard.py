"""The owner's side of a dataset's training policy: checks, the DP budget, private training, audit.

Owns :class:`TrainingGuard`, used by :class:`~node.server.fl.owner.OwnerDatasets`
for every ``train`` (a client's or a trainer node's job: both arrive as
``train``), whatever the trainer asks:

1. :meth:`TrainingGuard.check`, on the loop before any work: the dataset's
   :class:`~node.fl.policy.TrainingPolicy` (allowed layers and model size
   against the checked spec, before anything is built; minimum batch and
   samples; secure aggregation only).  A refusal is
   :class:`~node.fl.policy.PolicyRefused` (``PERMISSION_DENIED``, naming the rule).
2. :meth:`TrainingGuard.charge`, in the worker thread before training: the
   DP-SGD run this request will make (:func:`node.fl.privacy.dp_schedule`)
   is charged to the dataset's budget in the
   :class:`~node.fl.ledger.PrivacyLedger` kept in the node's state
   directory (``privacy_ledger.json``, persisted before training starts);
   past the budget, :class:`~node.fl.errors.PrivacyBudgetExhausted` and
   nothing is charged.
3. :meth:`TrainingGuard.fit`: DP-SGD (:func:`node.fl.privacy.train_privately`,
   noise from the OS's randomness, never from the trainer's seed) or, where
   the operator turned DP off, :func:`node.fl.train_locally` with the
   policy's minimum batch.
4. :meth:`TrainingGuard.record`: the audit trail (:mod:`node.server.fl.audit`).

The epsilon charged is the rise of the dataset's spent budget under the
accountant (:meth:`~node.fl.ledger.PrivacyLedger.charge`; a job's charges
add up to what it cost).  A training that fails
after its charge keeps it spent: conservative, and no retry can learn
anything for free.  Must not import asyncio or websockets.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Dict, NoReturn, Optional

import torch

from protocol.errors import TesseraError
from protocol.records import DatasetPolicy

from node.fl.datasets import Dataset, make_dataset
from node.fl.errors import PrivacyBudgetExhausted
from node.fl.hyperparameters import Hyperparameters, LossName
from node.fl.ledger import PrivacyLedger
from node.fl.local import train_locally
from node.fl.policy import DEFAULT_POLICY, PolicyRefused, TrainingPolicy
from node.fl.private_model import check_private_model
from node.fl.privacy import DpSgd, dp_schedule, train_privately
from node.fl.results import LocalResult, PrivacyCharge
from node.fl.spec import build_model, model_to_spec
from node.fl.wire import TrainTask
from node.server.fl.audit import AuditEntry, AuditLog, AuditOutcome

__all__ = ["TrainingGuard", "LEDGER_FILE"]

log = logging.getLogger("tessera.node.fl")

LEDGER_FILE = "privacy_ledger.json"
"""The DP budget ledger's file name in the node's state directory."""


class TrainingGuard:
    """Every dataset's policy, the privacy ledger and the audit trail of one owner node."""

    def __init__(self, state_dir: Optional[Path]) -> None:
        self.policies: Dict[str, TrainingPolicy] = {}
        self.audit = AuditLog(state_dir)
        self._ledger_path = None if state_dir is None else state_dir / LEDGER_FILE
        self._ledger: Optional[PrivacyLedger] = None
        self._left: Dict[str, float] = {}
        """Budget left per DP dataset, as of its last charge (announced without asking the accountant)."""
        self._lock = threading.Lock()

    @property
    def ledger(self) -> PrivacyLedger:
        """The budget ledger, read from the state directory on first use (blocking: not on the loop)."""
        with self._lock:
            if self._ledger is None:
                self._ledger = PrivacyLedger(self._ledger_path)
            return self._ledger

    def add(self, dataset: Dataset, policy: TrainingPolicy = DEFAULT_POLICY) -> None:
        """Guard ``dataset`` with ``policy`` (at load; blocking, it reads the ledger)."""
        name = dataset.info.name
        self.policies[name] = policy
        log.info("dataset %r training policy: %s", name, policy.describe(dataset.train_samples))
        if policy.dp is None:
            log.warning(
                "dataset %r: DP-SGD is off by the operator's policy: a trainer can reconstruct training rows "
                "from the updates it receives", name,
            )
        else:
            self._left[name] = self._remaining(dataset, policy)
            log.info("dataset %r: epsilon %.4g of %.4g left", name, self._left[name], policy.dp.epsilon)

    def policy(self, dataset: Dataset) -> TrainingPolicy:
        return self.policies.get(dataset.info.name, DEFAULT_POLICY)

    def _delta(self, dataset: Dataset, policy: TrainingPolicy) -> float:
        assert policy.dp is not None
        return policy.dp.delta_for(dataset.train_samples)

    def _remaining(self, dataset: Dataset, policy: TrainingPolicy) -> float:
        assert policy.dp is not None
        return self.ledger.remaining(dataset.info.name, policy.dp.epsilon, self._delta(dataset, policy))

    def summary(self, dataset: Dataset) -> DatasetPolicy:
        """The policy as announced in the dataset's summary: limits, delta, budget left (cheap, on the loop)."""
        return self.policy(dataset).summary(dataset.train_samples, self._left.get(dataset.info.name))

    # -- a train ----------------------------------------------------------------

    def check(self, dataset: Dataset, task: TrainTask, *, secure: bool) -> None:
        """The policy's rules on the spec and hyperparameters (on the loop; raises PolicyRefused)."""
        self.policy(dataset).check(dataset.info.name, task.spec, task.hyper, secure=secure,
                                   samples=dataset.train_samples)

    def charge(self, dataset: Dataset, task: TrainTask) -> Optional[PrivacyCharge]:
        """Charge this training to the budget before it runs; ``None`` with DP off.

        Raises :class:`PrivacyBudgetExhausted` (nothing charged) when it does not fit.
        """
        policy = self.policy(dataset)
        if policy.dp is None:
            return None
        name, budget = dataset.info.name, policy.dp.epsilon
        sample_rate, steps = dp_schedule(task.hyper, dataset.train_samples)
        charged = self.ledger.charge(name, budget, self._dp(dataset, policy), sample_rate, steps)
        left = self._left[name] = max(0.0, budget - charged.total)
        return PrivacyCharge(charged.added, left)

    def prepare(self, dataset: Dataset, task: TrainTask) -> None:
        """Before the budget is charged: the state fits the spec and, with DP on, DP-SGD can train the model.

        Reads no row (only the features' rank), so its refusals keep their detail.
        """
        if self.policy(dataset).dp is not None:
            check_private_model(build_model(task.spec, task.state), dataset.features.dim())

    def fit(self, dataset: Dataset, task: TrainTask, charge: Optional[PrivacyCharge]) -> LocalResult:
        """Train as the policy says: DP-SGD (fresh OS randomness) or plain with its minimum batch."""
        policy = self.policy(dataset)
        if policy.dp is None:
            return train_locally(task.spec, task.state, dataset, task.hyper, min_batch=policy.min_batch)
        result = train_privately(task.spec, task.state, dataset, task.hyper, self._dp(dataset, policy))
        return replace(result, privacy=charge)

    def _dp(self, dataset: Dataset, policy: TrainingPolicy) -> DpSgd:
        assert policy.dp is not None
        return DpSgd(policy.dp.noise_multiplier, policy.dp.max_grad_norm, self._delta(dataset, policy))

    def record(self, dataset: Dataset, principal: str, task: TrainTask, *, secure: bool,
               outcome: AuditOutcome, reason: Optional[str] = None,
               charge: Optional[PrivacyCharge] = None) -> None:
        """Append one audit entry (blocking file I/O: off the loop)."""
        self.audit.append(AuditEntry(
            AuditEntry.now(), dataset.info.name, principal, task.job_id, task.round, task.owner_index,
            task.spec.sha256(), secure, dataset.train_samples,
            None if charge is None else charge.epsilon, None if charge is None else charge.remaining,
            outcome, reason,
        ))

    def audited(self, dataset: Dataset, principal: str, task: TrainTask, *, secure: bool) -> _Audited:
        """A context for one training's outcome: trained, refused (budget) or failed (error code)."""
        return _Audited(self, dataset, principal, task, secure)

    def refuse(self, dataset: Dataset, principal: str, task: TrainTask, *, secure: bool,
               refusal: PolicyRefused) -> NoReturn:
        """Audit a refusal :meth:`check` made, then raise it (in the worker thread)."""
        self.record(dataset, principal, task, secure=secure, outcome=AuditOutcome.REFUSED,
                    reason=str(refusal.details.get("rule")))
        raise refusal

    def warm_up(self) -> None:
        """Run one tiny plain training (blocking), so torch's lazy imports are paid at start.

        DP-SGD's own imports (Opacus, with scipy: about a second of CPU) are
        not paid here but by the node's first DP-SGD training: a node does
        not need them to serve, and with them every node holding a DP
        dataset (the default policy) announced itself a second or more later.
        """
        toy = make_dataset("warm-up", torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64), heldout_fraction=0)
        spec, state = model_to_spec(torch.nn.Sequential(torch.nn.Linear(1, 2)))
        train_locally(spec, state, toy, Hyperparameters(0.1, batch_size=2, loss=LossName.CROSS_ENTROPY))


class _Audited:
    """Records what became of one training when its block ends (the error passes on unchanged)."""

    def __init__(self, guard: TrainingGuard, dataset: Dataset, principal: str, task: TrainTask, secure: bool) -> None:
        self.guard, self.dataset, self.principal, self.task, self.secure = guard, dataset, principal, task, secure
        self.charge: Optional[PrivacyCharge] = None

    def __enter__(self) -> _Audited:
        return self

    def __exit__(self, kind: object, exc: Optional[BaseException], tb: object) -> None:
        if isinstance(exc, PrivacyBudgetExhausted):
            outcome, reason = AuditOutcome.REFUSED, "epsilon"
        elif exc is None:
            outcome, reason = AuditOutcome.TRAINED, None
        elif isinstance(exc, TesseraError) and exc.code is not None:
            outcome, reason = AuditOutcome.FAILED, exc.code.value
        elif isinstance(exc, Exception):
            outcome, reason = AuditOutcome.FAILED, "INTERNAL"
        else:
            return  # cancelled or interrupted: not an outcome of the training
        self.guard.record(self.dataset, self.principal, self.task, secure=self.secure, outcome=outcome,
                          reason=reason, charge=self.charge)
