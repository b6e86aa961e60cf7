"""Federated learning on the wire: one local training round, and jobs run by a trainer node.

Two conversations:

- ``train`` (trainer -> data owner): a model spec, its state tensors, the
  hyperparameters, the dataset's name and the job's seed, round and owner
  index; the owner trains locally and answers ``train_reply`` with the
  updated state, its sample count, the training loss and held-out metrics,
  aggregates only, never rows.  The trainer is a client's process or a
  trainer node.
- ``job_submit`` / ``job_status`` / ``job_result`` (client -> trainer node):
  hand a whole FedAvg job to a node with the ``trainer`` role, which runs
  the rounds itself over node-to-node links, so the client may disconnect
  and come back by job id.

Also :func:`dataset_object_ids`: the fixed object ids under which a data
owner stores a dataset's rows (as private objects), so a client can name
them without a round trip.  Pure: no I/O, nothing from ``node/``.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Mapping, Tuple

from .ids import ObjectId, RequestId
from .kinds import MessageKind, RequestBase
from .secagg import SecureJob, SecureTrain
from .values import Value

if TYPE_CHECKING:
    import torch

__all__ = [
    "TrainRequest",
    "TrainReply",
    "WireMetrics",
    "OwnerPrivacy",
    "Dropout",
    "RoundRecord",
    "JobOwner",
    "JobStatus",
    "JobSubmitRequest",
    "JobSubmitReply",
    "JobStatusRequest",
    "JobStatusReply",
    "JobResultRequest",
    "JobResultReply",
    "JobError",
    "dataset_object_ids",
    "MAX_STATE_TENSORS",
    "MAX_SPEC_LAYERS",
    "MAX_HYPERPARAMETERS",
    "MAX_ROUNDS",
    "MAX_OWNERS",
    "MAX_OWNER_INDEX",
    "MAX_ROUND_TIMEOUT",
    "MAX_JOB_SEED",
    "MAX_REASON_CHARS",
]

MAX_STATE_TENSORS = 4096
"""Most state tensors in one model (``state_dict`` entries)."""

MAX_SPEC_LAYERS = 256
"""Most layers in a spec on the wire (the owner checks the layers themselves)."""

MAX_HYPERPARAMETERS = 16
"""Most entries in a ``hyperparameters`` map."""

MAX_ROUNDS = 100_000
"""Most rounds in one job."""

MAX_OWNERS = 256
"""Most data owners (datasets) in one job."""

MAX_OWNER_INDEX = MAX_OWNERS - 1

MAX_ROUND_TIMEOUT = 86_400.0
"""Longest round deadline, in seconds (one day)."""

MAX_JOB_SEED = 2**63 - 1

MAX_REASON_CHARS = 512
"""Longest text explaining why an owner dropped out of a round."""

State = Mapping[str, "torch.Tensor"]


def dataset_object_ids(dataset: str) -> Tuple[ObjectId, ObjectId]:
    """Object ids of a dataset's features and labels on its owner's node.

    ``first 8 bytes (big-endian) of SHA-256("tessera-dataset/v1:{dataset}:x")``
    (``:y`` for the labels), top bit cleared, never 0.  Fixed so that every
    client names the same rows; they are private, so knowing the id gives
    computation through pointers, never the data.
    """

    def derive(part: str) -> ObjectId:
        digest = hashlib.sha256(f"tessera-dataset/v1:{dataset}:{part}".encode("utf-8")).digest()
        return ObjectId((int.from_bytes(digest[:8], "big") & (2**63 - 1)) or 1)

    return derive("x"), derive("y")


@dataclass(frozen=True, slots=True)
class WireMetrics:
    """Mean loss (and accuracy, for classification losses) over ``samples`` samples."""

    loss: float
    accuracy: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class TrainRequest(RequestBase):
    """Train one round on the named dataset, starting from ``state``.

    ``spec`` is the model as layers (``node.fl.ModelSpec.to_wire``) and
    ``hyperparameters`` everything of ``node.fl.Hyperparameters`` but its
    seed: the owner derives that from ``job_seed``, ``round`` and
    ``owner_index`` (``node.fl.owner_seed``).  With a ``secure`` section
    the owner keeps its update for ``secagg_split`` (:mod:`protocol.secagg`)
    and its reply carries an empty state.  ``job_id`` names the job for the
    owner's audit trail (a trainer node's job id; optional, not trusted).
    """

    KIND: ClassVar[MessageKind] = MessageKind.TRAIN
    id: RequestId
    dataset: str
    spec: Tuple[Mapping[str, Value], ...]
    state: State
    hyperparameters: Mapping[str, Value]
    job_seed: int
    round: int
    owner_index: int
    secure: SecureTrain | None = None
    job_id: str | None = None

    def reply(
        self, state: State, samples: int, train_loss: float, heldout: WireMetrics | None,
        epsilon: float | None = None, epsilon_remaining: float | None = None,
    ) -> TrainReply:
        return TrainReply(self.id, state, samples, train_loss, heldout, epsilon, epsilon_remaining)


@dataclass(frozen=True, slots=True)
class TrainReply:
    """The owner's updated state (full, not a delta; empty in a secure round) and aggregate metrics.

    ``epsilon``: what this training charged to the dataset's DP budget, and
    ``epsilon_remaining`` what is left of it; both ``None`` when the dataset's
    policy has DP off (or the owner is an older node).
    """

    KIND: ClassVar[MessageKind] = MessageKind.TRAIN_REPLY
    id: RequestId
    state: State
    samples: int
    train_loss: float
    heldout: WireMetrics | None
    epsilon: float | None = None
    epsilon_remaining: float | None = None


@dataclass(frozen=True, slots=True)
class OwnerPrivacy:
    """What one owner's training in a round charged to its dataset's DP budget, and what is left."""

    owner: int
    epsilon: float
    remaining: float


@dataclass(frozen=True, slots=True)
class Dropout:
    """An owner left out of a round, and why."""

    owner: int
    reason: str


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One completed round of a job: who took part, who dropped out, the aggregates."""

    round: int
    participants: Tuple[int, ...]
    dropped: Tuple[Dropout, ...]
    samples: int
    train_loss: float
    heldout: WireMetrics | None
    seconds: float
    privacy: Tuple[OwnerPrivacy, ...] = ()
    """Per participant with DP on, in owner order: epsilon charged and remaining."""


@dataclass(frozen=True, slots=True)
class JobOwner:
    """Where a job's dataset is: the owner node, how to reach and pin it, the dataset."""

    node_id: str
    url: str
    fingerprint: str
    dataset: str


class JobStatus(str, enum.Enum):
    """Where a trainer node's job is."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed: a stable error code and its message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class JobSubmitRequest(RequestBase):
    """Run a FedAvg job on this trainer node; answered with its id at once."""

    KIND: ClassVar[MessageKind] = MessageKind.JOB_SUBMIT
    id: RequestId
    spec: Tuple[Mapping[str, Value], ...]
    state: State
    hyperparameters: Mapping[str, Value]
    job_seed: int
    rounds: int
    owners: Tuple[JobOwner, ...]
    min_participants: int
    round_timeout: float
    secure: SecureJob | None = None
    """Secure aggregation: the crypto provider party and the precision; nil for plain FedAvg."""

    def reply(self, job_id: str) -> JobSubmitReply:
        return JobSubmitReply(self.id, job_id)


@dataclass(frozen=True, slots=True)
class JobSubmitReply:
    KIND: ClassVar[MessageKind] = MessageKind.JOB_SUBMIT_REPLY
    id: RequestId
    job_id: str


@dataclass(frozen=True, slots=True)
class JobStatusRequest(RequestBase):
    """Progress of a job this principal submitted."""

    KIND: ClassVar[MessageKind] = MessageKind.JOB_STATUS
    id: RequestId
    job_id: str

    def reply(
        self,
        status: JobStatus,
        rounds: int,
        history: Tuple[RoundRecord, ...],
        error: JobError | None,
    ) -> JobStatusReply:
        return JobStatusReply(self.id, self.job_id, status, rounds, history, error)


@dataclass(frozen=True, slots=True)
class JobStatusReply:
    KIND: ClassVar[MessageKind] = MessageKind.JOB_STATUS_REPLY
    id: RequestId
    job_id: str
    status: JobStatus
    rounds: int
    history: Tuple[RoundRecord, ...]
    error: JobError | None


@dataclass(frozen=True, slots=True)
class JobResultRequest(RequestBase):
    """The job's global model as of its last good round."""

    KIND: ClassVar[MessageKind] = MessageKind.JOB_RESULT
    id: RequestId
    job_id: str

    def reply(self, rounds_done: int, state: State) -> JobResultReply:
        return JobResultReply(self.id, self.job_id, rounds_done, state)


@dataclass(frozen=True, slots=True)
class JobResultReply:
    KIND: ClassVar[MessageKind] = MessageKind.JOB_RESULT_REPLY
    id: RequestId
    job_id: str
    rounds_done: int
    state: State
