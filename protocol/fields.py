"""Field validation: loose decoded msgpack in, typed message dataclasses out.

Each kind has a ``_to_*`` body builder and a ``_from_*`` validator; the two
tables at the bottom are the only place that knows the wire field names, so
``PROTOCOL.md`` can be checked against them.  Validators raise
:class:`~protocol.errors.MalformedMessage` naming the offending field.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .ids import ObjectId, RequestId
from .limits import MAX_DELETE_BATCH, MAX_RESULTS
from .messages import (
    CommandRequest,
    DeleteRequest,
    DescribeReply,
    DescribeRequest,
    ErrorReply,
    GetReply,
    GetRequest,
    HelloReply,
    HelloRequest,
    ListReply,
    ListRequest,
    Message,
    MessageKind,
    ObjectInfo,
    PutRequest,
    ReleaseRequest,
    SyncReply,
    SyncRequest,
)
from .validate import (
    array,
    bad,
    blob,
    boolean,
    node_id,
    name,
    object_id,
    principal,
    required,
    string_map,
    tensor,
    text,
    uint,
)
from .record_fields import NETWORK_BODIES, NETWORK_PARSERS
from .federated_fields import FEDERATED_BODIES, FEDERATED_PARSERS
from .mpc_fields import MPC_BODIES, MPC_PARSERS
from .secagg_fields import SECAGG_BODIES, SECAGG_PARSERS
from .values import PointerRef

__all__ = ["body_of", "message_from", "WIRE_FIELDS"]

def _info_body(info: ObjectInfo) -> dict[str, Any]:
    return {
        "object_id": info.object_id,
        "dtype": info.dtype,
        "shape": list(info.shape),
        "owner": info.owner,
        "readable": info.readable,
        "private": info.private,
    }


def _info_from(value: object, field: str) -> ObjectInfo:
    """An ObjectInfo; ``owner``, ``readable`` and ``private`` may be absent (older peers)."""
    item = string_map(value, field)
    shape = array(required(item, "shape"), field + ".shape", 64)
    owner = item.get("owner", "")
    return ObjectInfo(
        object_id(required(item, "object_id"), field + ".object_id"),
        name(required(item, "dtype"), field + ".dtype"),
        tuple(uint(dim, field + ".shape") for dim in shape),
        principal(owner, field + ".owner") if owner != "" else "",
        boolean(item.get("readable", True), field + ".readable"),
        boolean(item.get("private", False), field + ".private"),
    )


def _put_body(m: PutRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"object_id": m.object_id, "value": m.value}
    if m.private:
        body["private"] = True  # omitted when false: frames stay as they were
    return body


def _infos_from(value: object, field: str) -> tuple[ObjectInfo, ...]:
    return tuple(_info_from(item, field) for item in array(value, field))


def _ids_from(value: object, field: str, max_len: int) -> tuple[ObjectId, ...]:
    return tuple(object_id(item, field) for item in array(value, field, max_len))


def _pointer_or_none(value: object, field: str) -> PointerRef | None:
    if value is not None and not isinstance(value, PointerRef):
        raise bad(field, "a pointer or nil")
    return value


def _detail_map(value: object, field: str) -> dict[str, Any]:
    details = string_map(value, field)
    for key, item in details.items():
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise bad(f"{field}.{key}", "a scalar")
    return details


_Builder = Callable[[Any], dict[str, Any]]
_Parser = Callable[[RequestId, Mapping[str, Any]], Message]

_BODIES: dict[MessageKind, _Builder] = {
    MessageKind.HELLO: lambda m: {
        "client": m.client,
        "roles": list(m.roles),
        "credentials": dict(m.credentials),
    },
    MessageKind.HELLO_REPLY: lambda m: {
        "node_id": m.node_id,
        "principal": m.principal,
        "roles": list(m.roles),
        "max_message_bytes": m.max_message_bytes,
        **({} if m.membership is None else {"membership": m.membership}),
    },
    MessageKind.PUT: _put_body,
    MessageKind.GET: lambda m: {
        "object_id": m.object_id,
        "delete": m.delete,
        "max_inline": m.max_inline,
    },
    MessageKind.GET_REPLY: lambda m: {"value": m.value},
    MessageKind.DELETE: lambda m: {"object_ids": list(m.object_ids)},
    MessageKind.COMMAND: lambda m: {
        "op": m.op,
        "target": m.target,
        "args": list(m.args),
        "kwargs": dict(m.kwargs),
        "results": list(m.results),
    },
    MessageKind.SYNC: lambda m: {},
    MessageKind.SYNC_REPLY: lambda m: {},
    MessageKind.LIST: lambda m: {},
    MessageKind.LIST_REPLY: lambda m: {"objects": [_info_body(i) for i in m.objects]},
    MessageKind.DESCRIBE: lambda m: {"object_ids": list(m.object_ids)},
    MessageKind.DESCRIBE_REPLY: lambda m: {"objects": [_info_body(i) for i in m.objects]},
    MessageKind.ERROR: lambda m: {
        "code": m.code,
        "message": m.message,
        "details": dict(m.details),
    },
    MessageKind.RELEASE: lambda m: {"object_id": m.object_id, "principal": m.principal},
}

_PARSERS: dict[MessageKind, _Parser] = {
    MessageKind.HELLO: lambda rid, b: HelloRequest(
        rid,
        int(b["v"]),
        name(required(b, "client"), "client"),
        tuple(name(r, "roles") for r in array(required(b, "roles"), "roles", 16)),
        string_map(required(b, "credentials"), "credentials"),
    ),
    MessageKind.HELLO_REPLY: lambda rid, b: HelloReply(
        rid,
        node_id(required(b, "node_id"), "node_id"),
        text(required(b, "principal"), "principal"),
        tuple(name(r, "roles") for r in array(required(b, "roles"), "roles", 16)),
        uint(required(b, "max_message_bytes"), "max_message_bytes"),
        None if b.get("membership") is None else blob(b["membership"], "membership", 32, 32),
    ),
    MessageKind.PUT: lambda rid, b: PutRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        tensor(required(b, "value"), "value"),
        boolean(b.get("private", False), "private"),
    ),
    MessageKind.GET: lambda rid, b: GetRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        boolean(b.get("delete", False), "delete"),
        uint(b.get("max_inline", 0), "max_inline"),
    ),
    MessageKind.GET_REPLY: lambda rid, b: GetReply(rid, tensor(required(b, "value"), "value")),
    MessageKind.DELETE: lambda rid, b: DeleteRequest(
        rid, _ids_from(required(b, "object_ids"), "object_ids", MAX_DELETE_BATCH)
    ),
    MessageKind.COMMAND: lambda rid, b: CommandRequest(
        rid,
        name(required(b, "op"), "op"),
        _pointer_or_none(b.get("target"), "target"),
        tuple(array(required(b, "args"), "args")),
        string_map(required(b, "kwargs"), "kwargs"),
        _nonempty(_ids_from(required(b, "results"), "results", MAX_RESULTS), "results"),
    ),
    MessageKind.SYNC: lambda rid, b: SyncRequest(rid),
    MessageKind.SYNC_REPLY: lambda rid, b: SyncReply(rid),
    MessageKind.LIST: lambda rid, b: ListRequest(rid),
    MessageKind.LIST_REPLY: lambda rid, b: ListReply(rid, _infos_from(required(b, "objects"), "objects")),
    MessageKind.DESCRIBE: lambda rid, b: DescribeRequest(
        rid, _ids_from(required(b, "object_ids"), "object_ids", MAX_DELETE_BATCH)
    ),
    MessageKind.DESCRIBE_REPLY: lambda rid, b: DescribeReply(
        rid, _infos_from(required(b, "objects"), "objects")
    ),
    MessageKind.ERROR: lambda rid, b: ErrorReply(
        rid,
        name(required(b, "code"), "code"),
        text(required(b, "message"), "message"),
        _detail_map(b.get("details", {}), "details"),
    ),
    MessageKind.RELEASE: lambda rid, b: ReleaseRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        principal(required(b, "principal"), "principal"),
    ),
}


def _nonempty(ids: tuple[ObjectId, ...], field: str) -> tuple[ObjectId, ...]:
    if not ids:
        raise bad(field, "a non-empty array")
    return ids


_BODIES.update(NETWORK_BODIES)
_PARSERS.update(NETWORK_PARSERS)
_BODIES.update(MPC_BODIES)
_PARSERS.update(MPC_PARSERS)
_BODIES.update(FEDERATED_BODIES)
_PARSERS.update(FEDERATED_PARSERS)
_BODIES.update(SECAGG_BODIES)
_PARSERS.update(SECAGG_PARSERS)


def body_of(message: Message) -> dict[str, Any]:
    """The wire map of ``message`` without the version (the codec adds it)."""
    body = _BODIES[message.KIND](message)
    body["kind"] = message.KIND.value
    body["id"] = message.id
    return body


def message_from(kind: MessageKind, request_id: RequestId, body: Mapping[str, Any]) -> Message:
    """Validate ``body`` into the dataclass of ``kind``."""
    return _PARSERS[kind](request_id, body)


WIRE_FIELDS: Mapping[MessageKind, Callable[[Any], dict[str, Any]]] = _BODIES
