"""``node.fl.FedAvg``: a federated job over datasets found on the network.

Owns :class:`JobPlan` (a checked job: spec, initial state, hyperparameters,
rounds, owners, minimum participants and deadline), :func:`run_rounds` (the
round loop both a client and a trainer node run, around one
:class:`~node.fl.rounds.RoundCollector`), :class:`History` and
:class:`FedAvg`, the user's entry point::

    job = node.fl.FedAvg(model, grid.datasets("#breast_cancer"), rounds=20, lr=0.1,
                         loss="bce_with_logits")
    history = job.fit()            # rounds run from this process
    remote = grid.connect("trainer").fit(job)   # or on a trainer node

Everything that can be checked is checked before the first round: the
datasets (some, with one feature shape), the model (allowlisted layers, and
it takes the data's samples), the hyperparameters (known optimiser and
loss), the round settings.  A failed round leaves :attr:`FedAvg.state` at
the last good round.

The datasets are injected (:class:`~node.fl.rounds.OwnerDataset`); this
module never opens a connection itself.  Must not import asyncio,
websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import copy
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, overload

import torch
from torch import nn
from tqdm.auto import tqdm

from protocol.federated import JobOwner, JobSubmitRequest, MAX_OWNERS, MAX_ROUND_TIMEOUT, MAX_ROUNDS, RoundRecord
from protocol.ids import RequestId
from protocol.secagg import DEFAULT_SECAGG_PRECISION, SecureJob

from .errors import IncompatibleData
from .hyperparameters import Hyperparameters
from .job_errors import JobError
from .rounds import DatasetRef, OwnerDataset, Participant, RoundCollector, collector_for
from .secure_rounds import SecureCollector
from .spec import ModelSpec, State, build_model, model_to_spec
from .wire import TrainTask, hyper_to_wire

__all__ = ["History", "JobPlan", "run_rounds", "FedAvg", "DEFAULT_ROUND_TIMEOUT"]

log = logging.getLogger("tessera.fl")

DEFAULT_ROUND_TIMEOUT = 60.0
"""Seconds a round waits for its owners by default."""


class History(Sequence[RoundRecord]):
    """Per-round records of a job, oldest first, with the usual curves as lists."""

    def __init__(self, records: Iterable[RoundRecord] = ()) -> None:
        self._records: List[RoundRecord] = list(records)

    @overload
    def __getitem__(self, index: int) -> RoundRecord: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RoundRecord]: ...

    def __getitem__(self, index: Any) -> Any:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[RoundRecord]:
        return iter(self._records)

    def append(self, record: RoundRecord) -> None:
        self._records.append(record)

    @property
    def train_loss(self) -> List[float]:
        return [r.train_loss for r in self._records]

    @property
    def accuracy(self) -> List[Optional[float]]:
        """Held-out accuracy per round (the owners' held-out rows, sample-weighted)."""
        return [r.heldout.accuracy if r.heldout is not None else None for r in self._records]

    @property
    def heldout_loss(self) -> List[Optional[float]]:
        return [r.heldout.loss if r.heldout is not None else None for r in self._records]

    @property
    def epsilon(self) -> List[Optional[float]]:
        """Per round, the DP budget this job has spent so far on its most-charged dataset.

        The owners' own accounting (each ``train_reply`` says what it charged);
        ``None`` until an owner with DP on has answered.
        """
        spent: Dict[int, float] = {}
        curve: List[Optional[float]] = []
        for record in self._records:
            for charge in record.privacy:
                spent[charge.owner] = spent.get(charge.owner, 0.0) + charge.epsilon
            curve.append(max(spent.values()) if spent else None)
        return curve

    @property
    def epsilon_remaining(self) -> List[Optional[float]]:
        """Per round, the smallest DP budget left on any participating dataset (``None``: no DP)."""
        return [min((c.remaining for c in r.privacy), default=None) for r in self._records]

    @property
    def dropped(self) -> List[Tuple[int, int, str]]:
        """Every dropout: ``(round, owner index, reason)``."""
        return [(r.round, d.owner, d.reason) for r in self._records for d in r.dropped]

    def __repr__(self) -> str:
        return f"<History {len(self)} rounds>"


@dataclass(frozen=True, slots=True, eq=False)
class JobPlan:
    """A checked job.  ``hyper.seed`` is the job's seed; owners derive theirs from it."""

    spec: ModelSpec
    state: State
    hyper: Hyperparameters
    rounds: int
    owners: Tuple[DatasetRef, ...]
    min_participants: int
    round_timeout: float
    secure: Optional[SecureJob] = None
    """Secure aggregation's crypto provider and precision; ``None`` for plain FedAvg."""
    job_id: Optional[str] = None
    """Names the job in the owners' audit trails (a trainer node's job id, or one drawn by FedAvg)."""

    def __post_init__(self) -> None:
        if type(self.rounds) is not int or not 1 <= self.rounds <= MAX_ROUNDS:
            raise JobError.for_reason(f"rounds must be an integer in [1, {MAX_ROUNDS}], got {self.rounds!r}")
        if not self.owners:
            raise JobError.for_reason("no datasets: the search matched nothing")
        if len(self.owners) > MAX_OWNERS:
            raise JobError.for_reason(f"at most {MAX_OWNERS} datasets per job, got {len(self.owners)}")
        count = len(self.owners)
        if type(self.min_participants) is not int or not 1 <= self.min_participants <= count:
            raise JobError.for_reason(
                f"min_participants must be an integer in [1, {count}] (the number of datasets), "
                f"got {self.min_participants!r}"
            )
        timeout = self.round_timeout
        if type(timeout) not in (int, float) or not 0 < timeout <= MAX_ROUND_TIMEOUT:
            raise JobError.for_reason(f"round_timeout must be in (0, {MAX_ROUND_TIMEOUT:g}] seconds, got {timeout!r}")
        shapes = {ref.feature_shape for ref in self.owners}
        if len(shapes) > 1:
            listed = ", ".join(f"{r.label} {list(r.feature_shape)}" for r in self.owners[:6])
            raise JobError.for_reason(f"the datasets have different feature shapes: {listed}")
        if self.secure is not None and count < 2:
            raise JobError.for_reason(
                "secure aggregation needs at least 2 datasets: the average of one owner is its update"
            )

    def task(self, state: State, round_index: int, owner_index: int) -> TrainTask:
        return TrainTask.create(self.spec, state, self.hyper, self.hyper.seed, round_index, owner_index, self.job_id)

    def submit_request(self, request_id: RequestId) -> JobSubmitRequest:
        """The ``job_submit`` handing this job to a trainer node."""
        owners = tuple(JobOwner(r.node_id, r.url, r.fingerprint, r.name) for r in self.owners)
        return JobSubmitRequest(
            request_id, tuple(self.spec.to_wire()), self.state, hyper_to_wire(self.hyper),  # type: ignore[arg-type]
            self.hyper.seed, self.rounds, owners, self.min_participants, float(self.round_timeout),
            self.secure,
        )


def run_rounds(
    plan: JobPlan,
    participants: Sequence[Participant],
    collector: RoundCollector,
    on_round: Callable[[RoundRecord, State], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> State:
    """Run every round; ``on_round`` gets each good round's record and new state.

    Raises :class:`~node.fl.job_errors.RoundFailed` (too few answers) or the
    error an owner refused the task with; the state passed to the last
    ``on_round`` is then the last good one.
    """
    state = plan.state
    for round_index in range(plan.rounds):
        if should_stop():
            break
        current = state
        result, record = collector.run_round(
            round_index, participants, lambda i: plan.task(current, round_index, i),
            float(plan.round_timeout), plan.min_participants,
        )
        state = result.state
        on_round(record, state)
    return state


def _flatten(datasets: Any) -> List[OwnerDataset]:
    """Datasets from a list of dataset pointers or of search matches (``.dataset_pointers``)."""
    if hasattr(datasets, "ref") or hasattr(datasets, "dataset_pointers"):
        datasets = [datasets]
    found: List[OwnerDataset] = []
    for item in datasets:
        pointers = getattr(item, "dataset_pointers", None)
        found.extend(pointers if pointers is not None else [item])
    for item in found:
        if not hasattr(item, "ref") or not hasattr(item, "participant"):
            raise JobError.for_reason(
                f"expected dataset pointers (grid.datasets('#tag') or grid.search('#tag')), got {type(item).__name__}"
            )
    return found


def _check_fit(model: nn.Sequential, feature_shape: Tuple[int, ...]) -> None:
    """The model takes one sample of the datasets' shape (labels are checked by the owners)."""
    sample = torch.zeros((1, *feature_shape))
    if len(model) and type(model[0]) is nn.Embedding:
        sample = sample.long()
    probe = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            probe(sample)
    except (RuntimeError, ValueError, IndexError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise IncompatibleData.for_dataset(
            "(all)", f"the model cannot take samples of shape {tuple(feature_shape)}: {reason}"
        ) from None


class FedAvg:
    """Federated averaging of ``model`` over ``datasets`` (McMahan et al. 2017).

    ``datasets``: dataset pointers (``grid.datasets("#tag")``) or search
    matches (``grid.search("#tag")``).  Owner ``i`` (in that order) trains
    round ``r`` with seed ``owner_seed(seed, r, i)``, so a job is reproducible
    and equals :func:`node.fl.plain_fedavg` bit for bit.  ``min_participants``
    (default 1) answers per round are needed, each within ``round_timeout``
    seconds; ``progress`` shows a tqdm bar per round.

    ``secure_aggregation=True`` (with ``crypto_provider``, a node handle):
    every owner secret-shares its sample-weighted update among the crypto
    provider and the owners' nodes, which sum shares; this process (or the
    trainer node) reconstructs only the weighted average
    (:class:`~node.fl.secure_rounds.SecureCollector`), equal to plain FedAvg
    up to ``secure_precision`` fractional bits of fixed point
    (:mod:`node.fl.secure`).  Each round then needs at least 2 owners.
    """

    def __init__(
        self,
        model: nn.Sequential,
        datasets: Any,
        rounds: int = 20,
        local_epochs: int = 1,
        batch_size: int = 32,
        optimizer: str = "sgd",
        lr: float = 0.1,
        loss: str = "bce_with_logits",
        seed: int = 0,
        min_participants: int = 1,
        round_timeout: float = DEFAULT_ROUND_TIMEOUT,
        secure_aggregation: bool = False,
        crypto_provider: Optional[object] = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        progress: bool = True,
        secure_precision: int = DEFAULT_SECAGG_PRECISION,
    ) -> None:
        self.collector = collector_for(secure_aggregation, crypto_provider, secure_precision)
        secure = self.collector.settings if isinstance(self.collector, SecureCollector) else None
        hyper = Hyperparameters(lr, local_epochs, batch_size, optimizer, loss, seed,  # type: ignore[arg-type]
                                momentum, weight_decay)
        self.datasets = _flatten(datasets)
        spec, state = model_to_spec(model)
        self.plan = JobPlan(spec, state, hyper, rounds, tuple(d.ref for d in self.datasets),
                            min_participants, round_timeout, secure, secrets.token_hex(16))
        _check_fit(model, self.plan.owners[0].feature_shape)
        self._model = model
        self.progress = progress
        self.state: State = state
        """The global model's state: the initial one, then that of the last good round."""
        self.history = History()

    def fit(self, callback: Optional[Callable[[RoundRecord], None]] = None) -> History:
        """Run every round from this process; returns the history (also :attr:`history`).

        ``callback`` is called after each good round with its record.

        Raises :class:`~node.fl.job_errors.RoundFailed` when a round gets
        too few answers (earlier rounds stay in :attr:`history`, the model at
        the last good round), or the typed error an owner refused the job with.
        """
        links: Dict[str, Any] = {}
        bar = tqdm(total=self.plan.rounds, desc="FedAvg", unit="round", disable=not self.progress)
        try:
            participants = [d.participant(links) for d in self.datasets]
            run_rounds(self.plan, participants, self.collector, lambda r, s: self._round_done(r, s, bar, callback))
        finally:
            bar.close()
            for link in links.values():
                _close_quietly(link)
        return self.history

    def _round_done(self, record: RoundRecord, state: State, bar: Any,
                    callback: Optional[Callable[[RoundRecord], None]]) -> None:
        self.state = state
        self.history.append(record)
        if callback is not None:
            callback(record)
        postfix = {"loss": f"{record.train_loss:.4f}"}
        spent = self.history.epsilon[-1]
        if spent is not None:  # DP-SGD owners withhold their loss: show the budget spent instead
            postfix = {"epsilon": f"{spent:.2f}"}
        if record.heldout is not None and record.heldout.accuracy is not None:
            postfix["acc"] = f"{record.heldout.accuracy:.3f}"
        if record.dropped:
            postfix["dropped"] = str(len(record.dropped))
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)

    @property
    def model(self) -> nn.Sequential:
        """A fresh copy of the model with the global state loaded."""
        return build_model(self.plan.spec, self.state)

    def with_state(self, state: State) -> FedAvg:
        """Record a global state computed elsewhere (a trainer node's result)."""
        self.state = dict(state)
        return self

    def __repr__(self) -> str:
        owners = ", ".join(r.label for r in self.plan.owners[:4])
        return f"<FedAvg {self.plan.rounds} rounds over {owners}{', ...' if len(self.plan.owners) > 4 else ''}>"


def _close_quietly(link: Any) -> None:
    close = getattr(link, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a dead owner's connection must not hide the job's outcome
            log.debug("closing a link failed", exc_info=True)

