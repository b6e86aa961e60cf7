"""Wire fields of the discovery and transfer kinds, and of node records.

The counterpart of :mod:`protocol.fields` for :mod:`protocol.discovery` and
:mod:`protocol.transfers`; :mod:`protocol.fields` merges both tables.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from .discovery import (
    DeregisterRequest,
    HeartbeatRequest,
    NodesReply,
    NodesRequest,
    RegisterReply,
    RegisterRequest,
)
from .dtypes import DTYPE_ITEMSIZES, check_dtype_name
from .errors import BadTensor, MalformedMessage
from .ids import NodeId
from .kinds import AckReply, MessageKind
from .limits import MAX_TENSOR_DIMS
from .records import (
    MAX_DATASETS,
    MAX_DESCRIPTION_CHARS,
    MAX_TAGS,
    TAG_PATTERN,
    DatasetPolicy,
    DatasetSummary,
    NodeRecord,
    NodeStatus,
    Role,
    validate_node_url,
)
from .streams import PutChunkRequest, ReadReply, ReadRequest
from .transfers import (
    MAX_POLICY_PRINCIPALS,
    TICKET_BYTES,
    DeliverRequest,
    ExpectRequest,
    TransferRequest,
    WireRestriction,
)
from .validate import (
    Builder,
    Parser,
    array,
    bad,
    blob,
    boolean,
    name,
    node_id,
    number,
    object_id,
    principal,
    required,
    string_map,
    tensor,
    tensor_dtype,
    text,
    uint,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "NETWORK_BODIES",
    "NETWORK_PARSERS",
    "record_body",
    "record_from",
    "fingerprint",
    "node_url",
    "address_body",
    "addresses_from",
    "address_from",
    "amount",
    "optional_amount",
]

FINGERPRINT_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")


def fingerprint(value: object, field: str) -> str:
    """A certificate fingerprint in canonical form: ``sha256:`` and 64 lower-case hex."""
    if not isinstance(value, str) or not FINGERPRINT_PATTERN.fullmatch(value):
        raise bad(field, "a fingerprint 'sha256:<64 lower-case hex digits>'")
    return value


def node_url(value: object, field: str) -> str:
    """A dialable node URL (:func:`~protocol.records.validate_node_url`), errors naming ``field``."""
    url = text(value, field)
    try:
        return validate_node_url(url)
    except MalformedMessage as exc:
        raise MalformedMessage(f"field {field!r}: {exc.message}", {"field": field}) from None


_Address = TypeVar("_Address")


def address_body(party: Any) -> dict[str, Any]:
    """``{node, url, fingerprint}`` of a party address (mpc ``PartyAddress``, secagg ``AggregationParty``)."""
    return {"node": party.node, "url": party.url, "fingerprint": party.fingerprint}


def address_from(make: Callable[[NodeId, str, str], _Address], value: object, field: str) -> _Address:
    """A ``{node, url, fingerprint}`` map, validated, built with ``make``."""
    item = string_map(value, field)
    return make(
        node_id(required(item, "node"), field + ".node"),
        node_url(required(item, "url"), field + ".url"),
        fingerprint(required(item, "fingerprint"), field + ".fingerprint"),
    )


def addresses_from(
    make: Callable[[NodeId, str, str], _Address], value: object, field: str, max_len: int
) -> tuple[_Address, ...]:
    """An array of 2 to ``max_len`` party addresses."""
    parties = tuple(address_from(make, p, field) for p in array(value, field, max_len))
    if len(parties) < 2:
        raise bad(field, f"an array of 2 to {max_len} parties")
    return parties


def _tags(value: object, field: str) -> tuple[str, ...]:
    tags = array(value, field, MAX_TAGS)
    for tag in tags:
        if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag) or tag != tag.lower():
            raise bad(field, "an array of lower-case tags like '#breast_cancer'")
    return tuple(tags)


def _roles(value: object, field: str) -> tuple[Role, ...]:
    roles = []
    for item in array(value, field, len(Role)):
        try:
            roles.append(Role(item))
        except ValueError:
            raise bad(field, "an array of " + ", ".join(r.value for r in Role)) from None
    return tuple(roles)


MAX_POLICY_LAYERS = 64
"""Most layer names in a dataset policy's ``allowed_layers``."""


def amount(value: object, field: str) -> float:
    """A finite, non-negative number (an epsilon, a delta, a norm)."""
    result = number(value, field)
    if not (math.isfinite(result) and result >= 0):
        raise bad(field, "a finite number >= 0")
    return result


def optional_amount(value: object, field: str) -> float | None:
    """nil, or :func:`amount`."""
    return None if value is None else amount(value, field)


def _dataset_policy_body(policy: DatasetPolicy) -> dict[str, Any]:
    return {
        "dp": policy.dp,
        "epsilon": policy.epsilon,
        "epsilon_remaining": policy.epsilon_remaining,
        "delta": policy.delta,
        "noise_multiplier": policy.noise_multiplier,
        "max_grad_norm": policy.max_grad_norm,
        "min_batch": policy.min_batch,
        "min_samples": policy.min_samples,
        "secure_min_owners": policy.secure_min_owners,
        "max_model_elements": policy.max_model_elements,
        "allowed_layers": None if policy.allowed_layers is None else list(policy.allowed_layers),
    }


def _dataset_policy_from(value: object, field: str) -> DatasetPolicy | None:
    if value is None:
        return None
    item = string_map(value, field)
    layers = item.get("allowed_layers")
    return DatasetPolicy(
        boolean(required(item, "dp"), field + ".dp"),
        optional_amount(item.get("epsilon"), field + ".epsilon"),
        optional_amount(item.get("epsilon_remaining"), field + ".epsilon_remaining"),
        optional_amount(item.get("delta"), field + ".delta"),
        optional_amount(item.get("noise_multiplier"), field + ".noise_multiplier"),
        optional_amount(item.get("max_grad_norm"), field + ".max_grad_norm"),
        uint(item.get("min_batch", 1), field + ".min_batch"),
        uint(item.get("min_samples", 1), field + ".min_samples"),
        uint(item.get("secure_min_owners", 0), field + ".secure_min_owners"),
        uint(item.get("max_model_elements", 0), field + ".max_model_elements"),
        None if layers is None else tuple(
            name(layer, field + ".allowed_layers")
            for layer in array(layers, field + ".allowed_layers", MAX_POLICY_LAYERS)
        ),
    )


def _dataset_body(dataset: DatasetSummary) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": dataset.name,
        "tags": list(dataset.tags),
        "description": dataset.description,
        "shape": list(dataset.shape),
        "samples": dataset.samples,
    }
    if dataset.policy is not None:  # omitted without one: older frames stay as they were
        body["policy"] = _dataset_policy_body(dataset.policy)
    return body


def _dataset_from(value: object, field: str) -> DatasetSummary:
    item = string_map(value, field)
    description = text(item.get("description", ""), field + ".description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise bad(field + ".description", f"at most {MAX_DESCRIPTION_CHARS} characters")
    shape = array(item.get("shape", []), field + ".shape", MAX_TENSOR_DIMS)
    return DatasetSummary(
        name(required(item, "name"), field + ".name"),
        _tags(item.get("tags", []), field + ".tags"),
        description,
        tuple(uint(d, field + ".shape") for d in shape),
        uint(item.get("samples", 0), field + ".samples"),
        _dataset_policy_from(item.get("policy"), field + ".policy"),
    )


def record_body(record: NodeRecord) -> dict[str, Any]:
    return {
        "node_id": record.node_id,
        "url": record.url,
        "fingerprint": record.fingerprint,
        "roles": [role.value for role in record.roles],
        "tags": list(record.tags),
        "datasets": [_dataset_body(d) for d in record.datasets],
    }


def record_from(value: object, field: str) -> NodeRecord:
    item = string_map(value, field)
    url = node_url(required(item, "url"), field + ".url")
    datasets = array(item.get("datasets", []), field + ".datasets", MAX_DATASETS)
    return NodeRecord(
        node_id(required(item, "node_id"), field + ".node_id"),
        url,
        fingerprint(required(item, "fingerprint"), field + ".fingerprint"),
        _roles(item.get("roles", []), field + ".roles"),
        _tags(item.get("tags", []), field + ".tags"),
        tuple(_dataset_from(d, f"{field}.datasets") for d in datasets),
    )


def _status_body(status: NodeStatus) -> dict[str, Any]:
    return {"record": record_body(status.record), "last_seen": status.last_seen, "online": status.online}


def _status_from(value: object, field: str) -> NodeStatus:
    item = string_map(value, field)
    return NodeStatus(
        record_from(required(item, "record"), field + ".record"),
        number(required(item, "last_seen"), field + ".last_seen"),
        boolean(required(item, "online"), field + ".online"),
    )


def _ticket(value: object, field: str) -> bytes:
    return blob(value, field, TICKET_BYTES, TICKET_BYTES)


def _optional_tag(value: object, field: str) -> str | None:
    if value is None:
        return None
    return _tags([value], field)[0]


NETWORK_BODIES: dict[MessageKind, Builder] = {
    MessageKind.ACK: lambda m: {},
    MessageKind.REGISTER: lambda m: {"record": record_body(m.record)},
    MessageKind.REGISTER_REPLY: lambda m: {"heartbeat_interval": m.heartbeat_interval},
    MessageKind.HEARTBEAT: lambda m: {},
    MessageKind.DEREGISTER: lambda m: {},
    MessageKind.NODES: lambda m: {"tag": m.tag},
    MessageKind.NODES_REPLY: lambda m: {"nodes": [_status_body(s) for s in m.nodes]},
    MessageKind.EXPECT: lambda m: {
        "object_id": m.object_id,
        "from_node": m.from_node,
        "from_fingerprint": m.from_fingerprint,
        "ticket": m.ticket,
    },
    MessageKind.TRANSFER: lambda m: {
        "object_id": m.object_id,
        "to_node": m.to_node,
        "to_url": m.to_url,
        "to_fingerprint": m.to_fingerprint,
        "dest_object_id": m.dest_object_id,
        "ticket": m.ticket,
        "delete_source": m.delete_source,
    },
    MessageKind.DELIVER: lambda m: {
        "object_id": m.object_id,
        "ticket": m.ticket,
        **chunk_body(m),
        **_policy_body(m),
    },
    MessageKind.PUT_CHUNK: lambda m: {
        "object_id": m.object_id,
        **chunk_body(m),
        **({"private": True} if m.private else {}),
    },
    MessageKind.READ: lambda m: {"object_id": m.object_id, "offset": m.offset, "nbytes": m.nbytes},
    MessageKind.READ_REPLY: lambda m: {"data": m.data},
}

NETWORK_PARSERS: dict[MessageKind, Parser] = {
    MessageKind.ACK: lambda rid, b: AckReply(rid),
    MessageKind.REGISTER: lambda rid, b: RegisterRequest(rid, record_from(required(b, "record"), "record")),
    MessageKind.REGISTER_REPLY: lambda rid, b: RegisterReply(
        rid, number(required(b, "heartbeat_interval"), "heartbeat_interval")
    ),
    MessageKind.HEARTBEAT: lambda rid, b: HeartbeatRequest(rid),
    MessageKind.DEREGISTER: lambda rid, b: DeregisterRequest(rid),
    MessageKind.NODES: lambda rid, b: NodesRequest(rid, _optional_tag(b.get("tag"), "tag")),
    MessageKind.NODES_REPLY: lambda rid, b: NodesReply(
        rid, tuple(_status_from(s, "nodes") for s in array(required(b, "nodes"), "nodes"))
    ),
    MessageKind.EXPECT: lambda rid, b: ExpectRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        node_id(required(b, "from_node"), "from_node"),
        fingerprint(required(b, "from_fingerprint"), "from_fingerprint"),
        _ticket(required(b, "ticket"), "ticket"),
    ),
    MessageKind.TRANSFER: lambda rid, b: TransferRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        node_id(required(b, "to_node"), "to_node"),
        node_url(required(b, "to_url"), "to_url"),
        fingerprint(required(b, "to_fingerprint"), "to_fingerprint"),
        object_id(required(b, "dest_object_id"), "dest_object_id"),
        _ticket(required(b, "ticket"), "ticket"),
        boolean(required(b, "delete_source"), "delete_source"),
    ),
    MessageKind.DELIVER: lambda rid, b: DeliverRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        _ticket(required(b, "ticket"), "ticket"),
        *chunk_from(b),
        _restrictions(b.get("restrictions"), "restrictions"),
        boolean(b.get("shared", False), "shared"),
    ),
    MessageKind.PUT_CHUNK: lambda rid, b: PutChunkRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        *chunk_from(b),
        boolean(b.get("private", False), "private"),
    ),
    MessageKind.READ: lambda rid, b: ReadRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        uint(required(b, "offset"), "offset"),
        uint(required(b, "nbytes"), "nbytes"),
    ),
    MessageKind.READ_REPLY: lambda rid, b: ReadReply(rid, _chunk_data(required(b, "data"), "data")),
}


def chunk_body(message: Any) -> dict[str, Any]:
    """The chunk fields shared by ``put_chunk`` and ``deliver``."""
    return {
        "dtype": message.dtype,
        "shape": list(message.shape),
        "offset": message.offset,
        "data": message.data,
        "last": message.last,
    }


def _policy_body(message: DeliverRequest) -> dict[str, Any]:
    """A delivery's policy fields; omitted when it carries none (older frames stay valid)."""
    if message.restrictions is None:
        return {}
    restrictions = [[guardian, list(readers)] for guardian, readers in message.restrictions]
    return {"restrictions": restrictions, "shared": message.shared}


def _restrictions(value: object, field: str) -> tuple[WireRestriction, ...] | None:
    """An array of ``[guardian, [reader, ...]]``, at most MAX_POLICY_PRINCIPALS names in all."""
    if value is None:
        return None
    entries = array(value, field, MAX_POLICY_PRINCIPALS)
    restrictions: list[WireRestriction] = []
    named = 0
    for entry in entries:
        pair = array(entry, field, 2)
        if len(pair) != 2:
            raise bad(field, "an array of [guardian, [reader, ...]] pairs")
        readers = array(pair[1], field, MAX_POLICY_PRINCIPALS)
        named += 1 + len(readers)
        if named > MAX_POLICY_PRINCIPALS:
            raise bad(field, f"a policy naming at most {MAX_POLICY_PRINCIPALS} principals")
        restrictions.append(
            (principal(pair[0], field), tuple(principal(r, field) for r in readers))
        )
    return tuple(restrictions)


def _chunk_data(value: object, field: str) -> torch.Tensor:
    data = tensor(value, field)
    if tensor_dtype(data) != "uint8" or data.dim() != 1:
        raise BadTensor(f"field {field!r} must be a 1-d uint8 tensor of raw bytes", {"field": field})
    return data


def chunk_from(body: Mapping[str, Any]) -> tuple[str, tuple[int, ...], int, torch.Tensor, bool]:
    """Validated (dtype, shape, offset, data, last) of a chunk; the bytes must fit the shape."""
    dtype_name = check_dtype_name(text(required(body, "dtype"), "dtype"))
    dims = tuple(uint(d, "shape") for d in array(required(body, "shape"), "shape", MAX_TENSOR_DIMS))
    offset = uint(required(body, "offset"), "offset")
    data = _chunk_data(required(body, "data"), "data")
    total = math.prod(dims) * DTYPE_ITEMSIZES[dtype_name]
    if offset + data.numel() > total:
        raise BadTensor(
            f"chunk [{offset}, {offset + data.numel()}) lies outside the {total}-byte tensor",
            {"offset": offset, "total": total},
        )
    return dtype_name, dims, offset, data, boolean(required(body, "last"), "last")
