"""A federated job, checked: what every round of it is built from.

Owns :class:`JobPlan` (spec, initial state, hyperparameters, rounds,
owners, minimum participants, deadline, secure-aggregation settings, job
id), checked on construction: a plan that exists can run.  A client's
``FedAvg`` makes one from the user's arguments; a trainer node from a
``job_submit`` (and :meth:`JobPlan.submit_request` is the way back).

Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from protocol.federated import JobOwner, JobSubmitRequest, MAX_OWNERS, MAX_ROUND_TIMEOUT, MAX_ROUNDS
from protocol.ids import RequestId
from protocol.secagg import SecureJob

from .hyperparameters import Hyperparameters
from .job_errors import JobError
from .links import DatasetRef
from .spec import ModelSpec, State
from .wire import hyper_to_wire

__all__ = ["JobPlan"]


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

    def submit_request(self, request_id: RequestId) -> JobSubmitRequest:
        """The ``job_submit`` handing this job to a trainer node."""
        owners = tuple(JobOwner(r.node_id, r.url, r.fingerprint, r.name) for r in self.owners)
        return JobSubmitRequest(
            request_id, tuple(self.spec.to_wire()), self.state, hyper_to_wire(self.hyper),  # type: ignore[arg-type]
            self.hyper.seed, self.rounds, owners, self.min_participants, float(self.round_timeout),
            self.secure,
        )
