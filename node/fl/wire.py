"""Conversions between the federated wire messages and the core's types.

Owns :class:`TrainTask` (what a trainer asks of one owner in one round),
:func:`train_request` / :func:`task_from_request` (its ``train`` message),
:func:`result_from_reply` / :func:`train_reply` (the ``train_reply``), and
the hyperparameter and metrics mappings.  The owner derives its local seed
from the job's seed, the round and its index (:func:`node.fl.owner_seed`),
so the seed never travels on its own.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Mapping, Optional, Tuple

from protocol.federated import OwnerPrivacy, TrainReply, TrainRequest, WireMetrics
from protocol.ids import RequestId
from protocol.secagg import SecureTrain

from .errors import HyperparameterError
from .hyperparameters import Hyperparameters
from .results import LocalResult, Metrics, PrivacyCharge
from .seeds import owner_seed
from .spec import ModelSpec, State

__all__ = [
    "TrainTask",
    "hyper_to_wire",
    "hyper_from_wire",
    "metrics_to_wire",
    "metrics_from_wire",
    "train_request",
    "task_from_request",
    "train_reply",
    "result_from_reply",
    "privacy_to_wire",
]


@dataclass(frozen=True, slots=True, eq=False)
class TrainTask:
    """One owner's work in one round: start from ``state``, train with ``hyper``.

    ``hyper.seed`` is the owner's derived seed (:func:`owner_seed`).
    ``secure`` is set in a secure-aggregation round: the owner keeps its
    update for ``secagg_split`` and answers with metrics only.  ``job_id``
    names the job in the owner's audit trail.
    """

    spec: ModelSpec
    state: State
    hyper: Hyperparameters
    job_seed: int
    round: int
    owner_index: int
    secure: Optional[SecureTrain] = None
    job_id: Optional[str] = None

    @classmethod
    def create(cls, spec: ModelSpec, state: State, hyper: Hyperparameters, job_seed: int,
               round_index: int, owner_index: int, job_id: Optional[str] = None) -> TrainTask:
        seed = owner_seed(job_seed, round_index, owner_index)
        return cls(spec, state, replace(hyper, seed=seed), job_seed, round_index, owner_index, job_id=job_id)


def hyper_to_wire(hyper: Hyperparameters) -> Dict[str, object]:
    """Every hyperparameter but the seed, which the owner derives."""
    wire = hyper.to_wire()
    del wire["seed"]
    return wire


def hyper_from_wire(value: Mapping[str, object], seed: int) -> Hyperparameters:
    """Checked hyperparameters from an untrusted map, with the derived ``seed``."""
    if "seed" in value:
        raise HyperparameterError.for_field(
            "seed", value["seed"], "derived by the owner from job_seed, round and owner_index"
        )
    return Hyperparameters.from_wire({**value, "seed": seed})


def metrics_to_wire(metrics: Optional[Metrics]) -> Optional[WireMetrics]:
    return None if metrics is None else WireMetrics(metrics.loss, metrics.accuracy, metrics.samples)


def metrics_from_wire(metrics: Optional[WireMetrics]) -> Optional[Metrics]:
    return None if metrics is None else Metrics(metrics.loss, metrics.accuracy, metrics.samples)


def train_request(request_id: RequestId, dataset: str, task: TrainTask) -> TrainRequest:
    spec = tuple(task.spec.to_wire())
    return TrainRequest(
        request_id, dataset, spec, task.state, hyper_to_wire(task.hyper),  # type: ignore[arg-type]
        task.job_seed, task.round, task.owner_index, task.secure, task.job_id,
    )


def task_from_request(request: TrainRequest) -> TrainTask:
    """The checked task: spec layers and hyperparameters against their allowlists.

    Raises :class:`~node.fl.SpecError` / :class:`~node.fl.HyperparameterError`
    (both ``BAD_REQUEST``); the state is checked when the model is built.
    """
    spec = ModelSpec.from_wire(list(request.spec))
    seed = owner_seed(request.job_seed, request.round, request.owner_index)
    hyper = hyper_from_wire(request.hyperparameters, seed)
    return TrainTask(
        spec, dict(request.state), hyper, request.job_seed, request.round, request.owner_index, request.secure,
        request.job_id,
    )


def train_reply(request: TrainRequest, result: LocalResult) -> TrainReply:
    """The reply to ``train``: in a secure round (``request.secure``) without the state."""
    state = {} if request.secure is not None else result.state
    privacy = result.privacy
    return request.reply(
        state, result.samples, result.train_loss, metrics_to_wire(result.heldout),
        None if privacy is None else privacy.epsilon, None if privacy is None else privacy.remaining,
    )


def result_from_reply(reply: TrainReply) -> LocalResult:
    privacy = None
    if reply.epsilon is not None and reply.epsilon_remaining is not None:
        privacy = PrivacyCharge(reply.epsilon, reply.epsilon_remaining)
    return LocalResult(dict(reply.state), reply.samples, reply.train_loss, metrics_from_wire(reply.heldout), privacy)


def privacy_to_wire(results: Mapping[int, LocalResult]) -> Tuple[OwnerPrivacy, ...]:
    """A round record's DP charges: one entry per owner index (ascending) whose owner reported one."""
    return tuple(
        OwnerPrivacy(index, result.privacy.epsilon, result.privacy.remaining)
        for index, result in sorted(results.items()) if result.privacy is not None
    )
