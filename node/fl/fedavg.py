"""``node.fl.FedAvg``: a federated job over datasets found on the network, the user's entry point.

    job = node.fl.FedAvg(model, grid.datasets("#breast_cancer"), rounds=20, lr=0.1,
                         loss="bce_with_logits")
    history = job.fit()            # rounds run from this process
    remote = grid.connect("trainer").fit(job)   # or on a trainer node

Owns :class:`FedAvg`.  Everything that can be checked is checked before
the first round (:class:`~node.fl.plan.JobPlan`): the datasets (some, with
one feature shape), the model (allowlisted layers, and it takes the data's
samples), the hyperparameters (known optimiser and loss), the round
settings.  :meth:`FedAvg.fit` runs the rounds through the loop a trainer
node runs too (:func:`node.fl.rounds.run_rounds`, with
:class:`~node.fl.strategy.FedAvgStrategy` and plain or secure
aggregation).  A failed round leaves :attr:`FedAvg.state` at the last good
round.

The datasets are injected (:class:`~node.fl.links.OwnerDataset`): they
give the job its participants and, with ``progress=True``, the observer
that shows it (``node.client`` draws a progress bar); this module never
opens a connection or draws anything itself.  Must not import asyncio,
websockets, tqdm, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from protocol.federated import RoundRecord
from protocol.secagg import DEFAULT_SECAGG_PRECISION, SecureJob

from .errors import IncompatibleData
from .history import History
from .hyperparameters import Hyperparameters
from .job_errors import JobError
from .links import OwnerDataset, PartyLink, as_party, close_quietly
from .plan import JobPlan
from .progress import RoundObserver, round_summary
from .rounds import Links, aggregation_for, run_rounds
from .secure import check_precision
from .spec import State, build_model, model_to_spec
from .strategy import FedAvgStrategy

__all__ = ["FedAvg", "DEFAULT_ROUND_TIMEOUT"]

DEFAULT_ROUND_TIMEOUT = 60.0
"""Seconds a round waits for its owners by default."""


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
    seconds; ``progress`` shows the job round by round (a progress bar drawn by
    the client the datasets came from).

    ``secure_aggregation=True`` (with ``crypto_provider``, a node handle):
    every owner secret-shares its sample-weighted update among the crypto
    provider and the owners' nodes, which sum shares; this process (or the
    trainer node) reconstructs only the weighted average
    (:class:`~node.fl.secure_rounds.SecureRounds`), equal to plain FedAvg
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
        provider: Optional[PartyLink] = None
        secure: Optional[SecureJob] = None
        if secure_aggregation:
            provider = as_party(crypto_provider)
            secure = SecureJob(provider.address, check_precision(secure_precision))
        hyper = Hyperparameters(lr, local_epochs, batch_size, optimizer, loss, seed,  # type: ignore[arg-type]
                                momentum, weight_decay)
        self.datasets = _flatten(datasets)
        spec, state = model_to_spec(model)
        self.plan = JobPlan(spec, state, hyper, rounds, tuple(d.ref for d in self.datasets),
                            min_participants, round_timeout, secure, secrets.token_hex(16))
        _check_fit(model, self.plan.owners[0].feature_shape)
        self._provider = provider
        """The crypto provider as an aggregation party (secure aggregation only)."""
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
        observer = self.datasets[0].progress(self.plan.rounds) if self.progress else None
        try:
            participants = [d.participant(links) for d in self.datasets]
            run_rounds(
                self.plan, Links(participants, self._provider), FedAvgStrategy(self.plan),
                aggregation_for(self.plan), lambda record, state: self._round_done(record, state, observer, callback),
            )
        finally:
            if observer is not None:
                observer.close()
            for link in links.values():
                close_quietly(link)
        return self.history

    def _round_done(self, record: RoundRecord, state: State, observer: Optional[RoundObserver],
                    callback: Optional[Callable[[RoundRecord], None]]) -> None:
        self.state = state
        self.history.append(record)
        if callback is not None:
            callback(record)
        if observer is not None:
            observer.round_done(record, round_summary(record, self.history.epsilon_spent))

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
