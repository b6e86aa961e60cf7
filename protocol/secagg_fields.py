"""Wire fields of the secure-aggregation kinds (:mod:`protocol.secagg`).

The counterpart of :mod:`protocol.fields` for ``secagg_setup``,
``secagg_split``, ``secagg_share``, ``secagg_sum`` and its reply, plus the
``secure`` sections that ``train`` and ``job_submit`` carry
(:func:`secure_train_body` / :func:`secure_train_from`,
:func:`secure_job_body` / :func:`secure_job_from`), which
:mod:`protocol.federated_fields` uses.  Shares and sums are int64 ring
tensors (anything else is ``BAD_TENSOR``).  Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .errors import BadTensor
from .ids import RequestId
from .kinds import MessageKind
from .record_fields import address_body, address_from, addresses_from, fingerprint
from .secagg import (
    MAX_AGGREGATION_PARTIES,
    MAX_ROUND_ID_BYTES,
    MAX_ROUND_OWNERS,
    MAX_SECAGG_PRECISION,
    MAX_SECAGG_TIMEOUT,
    MAX_SHARE_TENSORS,
    ROUND_ID_BYTES,
    AggregationParty,
    SecaggSetupRequest,
    SecaggShareRequest,
    SecaggSplitRequest,
    SecaggSumReply,
    SecaggSumRequest,
    SecureJob,
    SecureTrain,
    ShareSender,
)
from .validate import Builder, Parser, array, bad, blob, boolean, node_id, required, seconds, seed, shape, string_map, tensor, tensor_dtype, uint

if TYPE_CHECKING:
    import torch

__all__ = [
    "SECAGG_BODIES",
    "SECAGG_PARSERS",
    "secure_train_body",
    "secure_train_from",
    "secure_job_body",
    "secure_job_from",
]

MAX_OWNER_INDEX = MAX_ROUND_OWNERS - 1


def _round(value: object, field: str = "round") -> bytes:
    return blob(value, field, ROUND_ID_BYTES, MAX_ROUND_ID_BYTES)


def _precision(value: object, field: str) -> int:
    return uint(value, field, MAX_SECAGG_PRECISION)


def _sender_from(value: object, field: str) -> ShareSender:
    item = string_map(value, field)
    return ShareSender(
        uint(required(item, "owner"), field + ".owner", MAX_OWNER_INDEX),
        node_id(required(item, "node"), field + ".node"),
        fingerprint(required(item, "fingerprint"), field + ".fingerprint"),
    )


def _owners_from(value: object, field: str) -> tuple[int, ...]:
    owners = tuple(uint(o, field, MAX_OWNER_INDEX) for o in array(value, field, MAX_ROUND_OWNERS))
    if len(set(owners)) != len(owners):
        raise bad(field, "an array of distinct owner indices")
    return owners


def _key(key: str, field: str) -> None:
    if not 0 < len(key) <= 256:
        raise bad(field, "a map whose keys are 1 to 256 characters")


def _shapes_from(value: object, field: str) -> dict[str, tuple[int, ...]]:
    shapes = string_map(value, field)
    if not 0 < len(shapes) <= MAX_SHARE_TENSORS:
        raise bad(field, f"a map of 1 to {MAX_SHARE_TENSORS} shapes")
    result: dict[str, tuple[int, ...]] = {}
    for key, dims in shapes.items():
        _key(key, field)
        result[key] = shape(dims, f"{field}.{key[:64]}")
    return result


def _ring_map(value: object, field: str) -> dict[str, torch.Tensor]:
    items = string_map(value, field)
    if len(items) > MAX_SHARE_TENSORS:
        raise bad(field, f"a map of at most {MAX_SHARE_TENSORS} tensors")
    for key, item in items.items():
        _key(key, field)
        if tensor_dtype(tensor(item, f"{field}.{key[:64]}")) != "int64":
            raise BadTensor(f"field {field!r} must hold int64 ring tensors", {"field": field})
    return items


def _share_from(rid: RequestId, body: Mapping[str, Any]) -> SecaggShareRequest:
    shapes = _shapes_from(required(body, "shapes"), "shapes")
    share_seed = seed(body.get("seed"), "seed")
    values = _ring_map(body.get("values", {}), "values")
    if (share_seed is None) == (not values):
        raise bad("seed", "set exactly when values is empty")
    if values and list(values) != list(shapes):
        raise bad("values", "a map with the keys of shapes, in their order")
    for key, item in values.items():
        if tuple(item.shape) != shapes[key]:
            raise bad(f"values.{key[:64]}", f"a tensor of shape {list(shapes[key])}")
    return SecaggShareRequest(
        rid, _round(required(body, "round")), uint(required(body, "owner"), "owner", MAX_OWNER_INDEX),
        shapes, share_seed, values,
    )


def secure_train_body(section: SecureTrain | None) -> dict[str, Any] | None:
    return None if section is None else {"round": section.round, "precision": section.precision}


def secure_train_from(value: object, field: str = "secure") -> SecureTrain | None:
    if value is None:
        return None
    item = string_map(value, field)
    return SecureTrain(
        _round(required(item, "round"), field + ".round"),
        _precision(required(item, "precision"), field + ".precision"),
    )


def secure_job_body(section: SecureJob | None) -> dict[str, Any] | None:
    if section is None:
        return None
    return {"crypto_provider": address_body(section.crypto_provider), "precision": section.precision}


def secure_job_from(value: object, field: str = "secure") -> SecureJob | None:
    if value is None:
        return None
    item = string_map(value, field)
    return SecureJob(
        address_from(AggregationParty, required(item, "crypto_provider"), field + ".crypto_provider"),
        _precision(required(item, "precision"), field + ".precision"),
    )


SECAGG_BODIES: dict[MessageKind, Builder] = {
    MessageKind.SECAGG_SETUP: lambda m: {
        "round": m.round,
        "owners": [{"owner": s.owner, "node": s.node, "fingerprint": s.fingerprint} for s in m.owners],
        "timeout": m.timeout,
    },
    MessageKind.SECAGG_SPLIT: lambda m: {
        "round": m.round, "owner": m.owner, "parties": [address_body(p) for p in m.parties],
    },
    MessageKind.SECAGG_SHARE: lambda m: {
        "round": m.round,
        "owner": m.owner,
        "shapes": {key: list(shape) for key, shape in m.shapes.items()},
        "seed": m.seed,
        "values": dict(m.values),
    },
    MessageKind.SECAGG_SUM: lambda m: {"round": m.round, "owners": list(m.owners), "check": m.check},
    MessageKind.SECAGG_SUM_REPLY: lambda m: {"missing": list(m.missing), "sum": dict(m.sum)},
}

SECAGG_PARSERS: dict[MessageKind, Parser] = {
    MessageKind.SECAGG_SETUP: lambda rid, b: SecaggSetupRequest(
        rid,
        _round(required(b, "round")),
        tuple(_sender_from(s, "owners") for s in array(required(b, "owners"), "owners", MAX_ROUND_OWNERS)),
        seconds(required(b, "timeout"), "timeout", MAX_SECAGG_TIMEOUT),
    ),
    MessageKind.SECAGG_SPLIT: lambda rid, b: SecaggSplitRequest(
        rid,
        _round(required(b, "round")),
        uint(required(b, "owner"), "owner", MAX_OWNER_INDEX),
        addresses_from(AggregationParty, required(b, "parties"), "parties", MAX_AGGREGATION_PARTIES),
    ),
    MessageKind.SECAGG_SHARE: _share_from,
    MessageKind.SECAGG_SUM: lambda rid, b: SecaggSumRequest(
        rid,
        _round(required(b, "round")),
        _owners_from(required(b, "owners"), "owners"),
        boolean(required(b, "check"), "check"),
    ),
    MessageKind.SECAGG_SUM_REPLY: lambda rid, b: SecaggSumReply(
        rid,
        _owners_from(required(b, "missing"), "missing"),
        _ring_map(required(b, "sum"), "sum"),
    ),
}
