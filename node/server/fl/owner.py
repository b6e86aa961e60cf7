"""A data owner's side of federated learning: its datasets and the ``train`` kind.

Owns :class:`OwnerDatasets`, a :class:`~node.server.session.SessionService`.
At start the node loads every ``--dataset`` (:func:`node.fl.load_dataset`,
before it listens: a bad file stops the start with one line) and stores
each dataset's rows, features and labels as loaded, as **private objects**
of the :data:`OPERATOR` principal under the fixed ids of
:func:`protocol.federated.dataset_object_ids`: every authenticated principal
may see them and compute on them through pointers, nobody may read them
(``get`` is ``PERMISSION_DENIED``), and no authenticator ever yields the
``operator`` principal, so nobody can release them over the network either.
The datasets' summaries go into the node's gateway record.

``train`` (any authenticated principal: users and the network's member
nodes, e.g. a trainer node): the spec, hyperparameters and dataset are
checked on the loop (``BAD_REQUEST`` / ``NOT_FOUND`` before any work), then
the dataset's training policy (:class:`~node.server.fl.guard.TrainingGuard`:
layers, model size, batch, samples, secure only; ``PERMISSION_DENIED``
naming the rule), the state when the model is built; then, in a worker
thread, the DP budget is charged and the model trained as the policy says
(DP-SGD, or plain where the operator turned DP off), at most
:data:`MAX_CONCURRENT_TRAININGS` at a time, every outcome audited, and the
reply carries the updated state, the epsilon charged and left, and
aggregate metrics only.  The training's transient memory
(model, gradients, optimiser state) is checked against the caller's byte
quota first.  A secure ``train`` (its ``secure`` section set) encodes the
sample-weighted update (:func:`node.fl.secure.encode_update`) into
:attr:`OwnerDatasets.pending` for the caller's ``secagg_split``
(:mod:`node.server.fl.secagg`) and replies without the state.  Must
not import asyncio or websockets.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from protocol.errors import NotFound, QuotaExceeded
from protocol.federated import TrainRequest, dataset_object_ids
from protocol.messages import MessageKind
from protocol.records import DatasetSummary

from node.fl.datasets import Dataset, load_arrays, make_dataset
from node.fl.errors import DatasetError
from node.fl.policy import PolicyRefused
from node.fl.secure import encode_update
from node.fl.wire import task_from_request, train_reply
from node.settings import DatasetSource
from node.server.policy import Policy
from peer.server.redaction import note_restricted
from node.server.fl.secagg_mailbox import PendingUpdates
from node.server.session import Outcome, Session, Step, Work
from node.server.store import Hold, ObjectStore, Reservation
from node.server.fl.guard import TrainingGuard

__all__ = ["OwnerDatasets", "OPERATOR", "MAX_CONCURRENT_TRAININGS", "TRAINING_BYTES_PER_ELEMENT"]

log = logging.getLogger("tessera.node.fl")

OPERATOR = "operator"
"""The principal owning a node's startup datasets.  Authenticated principals are
``user:``, ``node:`` or ``anon-`` names, so no peer can ever be it."""

MAX_CONCURRENT_TRAININGS = 2
"""Local trainings one node runs at once; more wait for a slot."""

TRAINING_BYTES_PER_ELEMENT = 16
"""Transient bytes per model element charged to the caller's quota while training
(float32 weights, gradients and up to two optimiser moments)."""


class OwnerDatasets:
    """The node's datasets, and the ``train`` handler."""

    def __init__(self, store: ObjectStore, state_dir: Path | None = None) -> None:
        self.store = store
        self.guard = TrainingGuard(state_dir)
        """Each dataset's training policy, the DP budget ledger and the audit trail (in ``state_dir``)."""
        self.pending = PendingUpdates()
        """Secure rounds' encoded updates, waiting for their ``secagg_split``."""
        self.datasets: dict[str, Dataset] = {}
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_TRAININGS)

    def load(self, sources: Iterable[DatasetSource], tags: tuple[str, ...]) -> None:
        """Load and store every dataset (blocking file I/O: run it off the loop).

        Raises :class:`~node.fl.DatasetError` (one line) for a missing or
        malformed file or a repeated name.
        """
        for source in sources:
            if source.name in self.datasets:
                raise DatasetError.for_spec(source.name, "this dataset name is given twice")
            dataset, features, labels = _load(source, tags)
            features_id, labels_id = dataset_object_ids(source.name)
            policy = Policy.private(OPERATOR)
            self.store.put(OPERATOR, features_id, features, policy)
            self.store.put(OPERATOR, labels_id, labels, policy)
            self.datasets[source.name] = dataset
            log.info(
                "dataset %r: %d samples of shape %s (%d held out)",
                source.name, dataset.info.samples, list(dataset.info.feature_shape), dataset.heldout_samples,
            )
            self.guard.add(dataset, source.policy)
        self.warm_up()

    def warm_up(self) -> None:
        """Train a two-row toy model once, at start, if the node has datasets (blocking).

        A process's first local training pays for torch's lazy imports
        (autograd, the loss functions); paying it before the node announces
        itself keeps it out of the first round.  (Our optimisers avoid
        ``torch.optim``, whose constructor imports ``torch._dynamo``: a second.)
        Opacus is imported by the first DP-SGD training, not here
        (:meth:`~node.server.fl.guard.TrainingGuard.warm_up`).
        """
        if self.datasets:
            self.guard.warm_up()

    def summaries(self) -> tuple[DatasetSummary, ...]:
        """What the node announces: each dataset and its training policy, with the budget left."""
        return tuple(replace(d.info.to_record(), policy=self.guard.summary(d)) for d in self.datasets.values())

    def handlers(self, session: Session) -> Mapping[MessageKind, Callable[[Any], Step]]:
        return {MessageKind.TRAIN: lambda request: self._train(session, request)}

    def _train(self, session: Session, request: TrainRequest) -> Step:
        assert session.principal is not None
        dataset = self.datasets.get(request.dataset)
        if dataset is None:
            raise NotFound(f"no dataset {request.dataset!r} on this node", {"dataset": request.dataset})
        task = task_from_request(request)
        principal, secure = session.principal, request.secure
        try:
            self.guard.check(dataset, task, secure=secure is not None)
        except PolicyRefused as exc:  # audited off the loop, then answered with the rule
            refusal = exc
            return Work(lambda: session.guarded(request, lambda: self.guard.refuse(
                dataset, principal, task, secure=secure is not None, refusal=refusal)))
        training, parked = _reserve(session.store, principal, task.spec.elements, secure is not None)
        min_owners = max(2, self.guard.policy(dataset).secure_min_owners)

        def run() -> Outcome:
            try:
                with self.guard.audited(dataset, principal, task, secure=secure is not None) as audit:
                    self.guard.prepare(dataset, task)  # the model and its DP layer rules: no row read yet
                    note_restricted()  # training reads the operator's private rows: errors from here on are withheld
                    audit.charge = self.guard.charge(dataset, task)  # before training: refused past the budget
                    with self._slots:
                        result = self.guard.fit(dataset, task, audit.charge)
                    if secure is not None and parked is not None:
                        update = encode_update(result.state, result.samples, secure.precision)
                        self.pending.put(principal, secure.round, request.owner_index, update, parked,
                                         min_owners=min_owners)
                return Outcome(train_reply(request, result))
            except BaseException:
                if parked is not None:
                    parked.release()  # kept by self.pending only once put
                raise
            finally:
                training.release()

        return Work(lambda: session.guarded(request, run))


def _reserve(store: ObjectStore, principal: str, elements: int, secure: bool) -> tuple[Reservation, Reservation | None]:
    """The caller's quota for a training's transient memory and, if secure, for its parked update.

    Taken on the loop, before any work, so an over-quota ``train`` is
    refused ``QUOTA_EXCEEDED`` at once and with its reason.
    """
    training = store.reserve(principal, Hold.TRAINING, elements * TRAINING_BYTES_PER_ELEMENT)
    if not secure:
        return training, None
    try:  # the encoded update is int64 in the ring: 8 bytes per element
        return training, store.reserve(principal, Hold.SECURE_UPDATE, elements * 8)
    except QuotaExceeded:
        training.release()
        raise


def _load(source: DatasetSource, tags: tuple[str, ...]) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """The dataset (training and held-out rows) and the file's rows as loaded."""
    features, labels = load_arrays(source.path, label_column=source.label_column)
    dataset = make_dataset(
        source.name, features, labels, tags=tags, description=source.description,
        heldout_fraction=source.heldout_fraction, source=str(source.path),
    )
    return dataset, features, labels

