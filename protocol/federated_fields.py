"""Wire fields of the federated-learning kinds (:mod:`protocol.federated`).

The counterpart of :mod:`protocol.fields` for ``train``, ``job_submit``,
``job_status``, ``job_result`` and their replies; :mod:`protocol.fields`
merges these tables into its own.  The model spec's layers are checked here
only for their shape on the wire (an array of maps); the data owner checks
layer names and arguments against its allowlist.  Pure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from .federated import (
    MAX_HYPERPARAMETERS,
    MAX_JOB_SEED,
    MAX_OWNER_INDEX,
    MAX_OWNERS,
    MAX_REASON_CHARS,
    MAX_ROUND_TIMEOUT,
    MAX_ROUNDS,
    MAX_SPEC_LAYERS,
    MAX_STATE_TENSORS,
    Dropout,
    JobError,
    JobOwner,
    JobResultReply,
    JobResultRequest,
    JobStatus,
    JobStatusReply,
    JobStatusRequest,
    JobSubmitReply,
    JobSubmitRequest,
    OwnerPrivacy,
    RoundRecord,
    TrainReply,
    TrainRequest,
    WireMetrics,
)
from .kinds import MessageKind
from .record_fields import amount, fingerprint, node_url, optional_amount
from .secagg_fields import secure_job_body, secure_job_from, secure_train_body, secure_train_from
from .validate import Builder, Parser, array, bad, choice, name, node_id, number, required, seconds, string_map, tensor, text, uint

if TYPE_CHECKING:
    import torch

__all__ = ["FEDERATED_BODIES", "FEDERATED_PARSERS"]

MAX_ROUND_INDEX = MAX_ROUNDS - 1


def _state_body(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return dict(state)


def _state_from(value: object, field: str) -> dict[str, torch.Tensor]:
    state = string_map(value, field)
    if len(state) > MAX_STATE_TENSORS:
        raise bad(field, f"a map of at most {MAX_STATE_TENSORS} tensors")
    for key, item in state.items():
        if not 0 < len(key) <= 256:
            raise bad(field, "a map whose keys are 1 to 256 characters")
        tensor(item, f"{field}.{key[:64]}")
    return state


def _spec_from(value: object, field: str) -> tuple[dict[str, Any], ...]:
    layers = array(value, field, MAX_SPEC_LAYERS)
    return tuple(string_map(layer, field) for layer in layers)


def _hyper_from(value: object, field: str) -> dict[str, Any]:
    hyper = string_map(value, field)
    if len(hyper) > MAX_HYPERPARAMETERS:
        raise bad(field, f"a map of at most {MAX_HYPERPARAMETERS} entries")
    for key, item in hyper.items():
        if item is not None and not isinstance(item, (bool, int, float, str)):
            raise bad(f"{field}.{key[:64]}", "a scalar")
    return hyper


def _finite(value: object, field: str) -> float:
    result = number(value, field)
    if not math.isfinite(result):
        raise bad(field, "a finite number")
    return result


def _optional_number(value: object, field: str) -> float | None:
    return None if value is None else _finite(value, field)


def _metrics_body(metrics: WireMetrics | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {"loss": metrics.loss, "accuracy": metrics.accuracy, "samples": metrics.samples}


def _metrics_from(value: object, field: str) -> WireMetrics | None:
    if value is None:
        return None
    item = string_map(value, field)
    return WireMetrics(
        _finite(required(item, "loss"), field + ".loss"),
        _optional_number(item.get("accuracy"), field + ".accuracy"),
        uint(required(item, "samples"), field + ".samples"),
    )


def _record_body(record: RoundRecord) -> dict[str, Any]:
    body = {
        "round": record.round,
        "participants": list(record.participants),
        "dropped": [{"owner": d.owner, "reason": d.reason} for d in record.dropped],
        "samples": record.samples,
        "train_loss": record.train_loss,
        "heldout": _metrics_body(record.heldout),
        "seconds": record.seconds,
    }
    if record.privacy:  # omitted when no owner charged a DP budget: older frames stay as they were
        body["privacy"] = [{"owner": p.owner, "epsilon": p.epsilon, "remaining": p.remaining} for p in record.privacy]
    return body


def _privacy_from(value: object, field: str) -> OwnerPrivacy:
    item = string_map(value, field)
    return OwnerPrivacy(
        uint(required(item, "owner"), field + ".owner", MAX_OWNER_INDEX),
        amount(required(item, "epsilon"), field + ".epsilon"),
        amount(required(item, "remaining"), field + ".remaining"),
    )


def _optional_fields(**fields: Any) -> dict[str, Any]:
    """The optional fields that are set (nil ones are omitted, so older frames stay as they were)."""
    return {key: value for key, value in fields.items() if value is not None}


def _reason(value: object, field: str) -> str:
    reason = text(value, field)
    if len(reason) > MAX_REASON_CHARS:
        raise bad(field, f"a string of at most {MAX_REASON_CHARS} characters")
    return reason


def _record_from(value: object, field: str) -> RoundRecord:
    item = string_map(value, field)
    participants = array(required(item, "participants"), field + ".participants", MAX_OWNERS)
    dropped = array(required(item, "dropped"), field + ".dropped", MAX_OWNERS)
    privacy = array(item.get("privacy", []), field + ".privacy", MAX_OWNERS)
    return RoundRecord(
        uint(required(item, "round"), field + ".round", MAX_ROUND_INDEX),
        tuple(uint(p, field + ".participants", MAX_OWNER_INDEX) for p in participants),
        tuple(_dropout_from(d, field + ".dropped") for d in dropped),
        uint(required(item, "samples"), field + ".samples"),
        _finite(required(item, "train_loss"), field + ".train_loss"),
        _metrics_from(item.get("heldout"), field + ".heldout"),
        _finite(required(item, "seconds"), field + ".seconds"),
        tuple(_privacy_from(p, field + ".privacy") for p in privacy),
    )


def _dropout_from(value: object, field: str) -> Dropout:
    item = string_map(value, field)
    return Dropout(
        uint(required(item, "owner"), field + ".owner", MAX_OWNER_INDEX),
        _reason(required(item, "reason"), field + ".reason"),
    )


def _owner_body(owner: JobOwner) -> dict[str, Any]:
    return {"node_id": owner.node_id, "url": owner.url, "fingerprint": owner.fingerprint, "dataset": owner.dataset}


def _owner_from(value: object, field: str) -> JobOwner:
    item = string_map(value, field)
    return JobOwner(
        node_id(required(item, "node_id"), field + ".node_id"),
        node_url(required(item, "url"), field + ".url"),
        fingerprint(required(item, "fingerprint"), field + ".fingerprint"),
        name(required(item, "dataset"), field + ".dataset"),
    )


def _owners_from(value: object, field: str) -> tuple[JobOwner, ...]:
    owners = array(value, field, MAX_OWNERS)
    if not owners:
        raise bad(field, "a non-empty array")
    return tuple(_owner_from(owner, field) for owner in owners)


def _error_body(error: JobError | None) -> dict[str, Any] | None:
    return None if error is None else {"code": error.code, "message": error.message}


def _error_from(value: object, field: str) -> JobError | None:
    if value is None:
        return None
    item = string_map(value, field)
    return JobError(name(required(item, "code"), field + ".code"), text(required(item, "message"), field + ".message"))


def _positive(value: object, field: str, limit: int) -> int:
    count = uint(value, field, limit)
    if count == 0:
        raise bad(field, f"an integer in [1, {limit}]")
    return count


FEDERATED_BODIES: dict[MessageKind, Builder] = {
    MessageKind.TRAIN: lambda m: {
        "dataset": m.dataset,
        "spec": [dict(layer) for layer in m.spec],
        "state": _state_body(m.state),
        "hyperparameters": dict(m.hyperparameters),
        "job_seed": m.job_seed,
        "round": m.round,
        "owner_index": m.owner_index,
        "secure": secure_train_body(m.secure),
        **_optional_fields(job_id=m.job_id),
    },
    MessageKind.TRAIN_REPLY: lambda m: {
        "state": _state_body(m.state),
        "samples": m.samples,
        "train_loss": m.train_loss,
        "heldout": _metrics_body(m.heldout),
        **_optional_fields(epsilon=m.epsilon, epsilon_remaining=m.epsilon_remaining),
    },
    MessageKind.JOB_SUBMIT: lambda m: {
        "spec": [dict(layer) for layer in m.spec],
        "state": _state_body(m.state),
        "hyperparameters": dict(m.hyperparameters),
        "job_seed": m.job_seed,
        "rounds": m.rounds,
        "owners": [_owner_body(o) for o in m.owners],
        "min_participants": m.min_participants,
        "round_timeout": m.round_timeout,
        "secure": secure_job_body(m.secure),
    },
    MessageKind.JOB_SUBMIT_REPLY: lambda m: {"job_id": m.job_id},
    MessageKind.JOB_STATUS: lambda m: {"job_id": m.job_id},
    MessageKind.JOB_STATUS_REPLY: lambda m: {
        "job_id": m.job_id,
        "status": m.status.value,
        "rounds": m.rounds,
        "history": [_record_body(r) for r in m.history],
        "error": _error_body(m.error),
    },
    MessageKind.JOB_RESULT: lambda m: {"job_id": m.job_id},
    MessageKind.JOB_RESULT_REPLY: lambda m: {
        "job_id": m.job_id,
        "rounds_done": m.rounds_done,
        "state": _state_body(m.state),
    },
}

FEDERATED_PARSERS: dict[MessageKind, Parser] = {
    MessageKind.TRAIN: lambda rid, b: TrainRequest(
        rid,
        name(required(b, "dataset"), "dataset"),
        _spec_from(required(b, "spec"), "spec"),
        _state_from(required(b, "state"), "state"),
        _hyper_from(required(b, "hyperparameters"), "hyperparameters"),
        uint(required(b, "job_seed"), "job_seed", MAX_JOB_SEED),
        uint(required(b, "round"), "round", MAX_ROUND_INDEX),
        uint(required(b, "owner_index"), "owner_index", MAX_OWNER_INDEX),
        secure_train_from(b.get("secure")),
        None if b.get("job_id") is None else name(b["job_id"], "job_id"),
    ),
    MessageKind.TRAIN_REPLY: lambda rid, b: TrainReply(
        rid,
        _state_from(required(b, "state"), "state"),
        uint(required(b, "samples"), "samples"),
        _finite(required(b, "train_loss"), "train_loss"),
        _metrics_from(b.get("heldout"), "heldout"),
        optional_amount(b.get("epsilon"), "epsilon"),
        optional_amount(b.get("epsilon_remaining"), "epsilon_remaining"),
    ),
    MessageKind.JOB_SUBMIT: lambda rid, b: JobSubmitRequest(
        rid,
        _spec_from(required(b, "spec"), "spec"),
        _state_from(required(b, "state"), "state"),
        _hyper_from(required(b, "hyperparameters"), "hyperparameters"),
        uint(required(b, "job_seed"), "job_seed", MAX_JOB_SEED),
        _positive(required(b, "rounds"), "rounds", MAX_ROUNDS),
        _owners_from(required(b, "owners"), "owners"),
        _positive(required(b, "min_participants"), "min_participants", MAX_OWNERS),
        seconds(required(b, "round_timeout"), "round_timeout", MAX_ROUND_TIMEOUT),
        secure_job_from(b.get("secure")),
    ),
    MessageKind.JOB_SUBMIT_REPLY: lambda rid, b: JobSubmitReply(rid, name(required(b, "job_id"), "job_id")),
    MessageKind.JOB_STATUS: lambda rid, b: JobStatusRequest(rid, name(required(b, "job_id"), "job_id")),
    MessageKind.JOB_STATUS_REPLY: lambda rid, b: JobStatusReply(
        rid,
        name(required(b, "job_id"), "job_id"),
        choice(JobStatus, required(b, "status"), "status"),
        _positive(required(b, "rounds"), "rounds", MAX_ROUNDS),
        tuple(_record_from(r, "history") for r in array(required(b, "history"), "history", MAX_ROUNDS)),
        _error_from(b.get("error"), "error"),
    ),
    MessageKind.JOB_RESULT: lambda rid, b: JobResultRequest(rid, name(required(b, "job_id"), "job_id")),
    MessageKind.JOB_RESULT_REPLY: lambda rid, b: JobResultReply(
        rid,
        name(required(b, "job_id"), "job_id"),
        uint(required(b, "rounds_done"), "rounds_done", MAX_ROUNDS),
        _state_from(required(b, "state"), "state"),
    ),
}
