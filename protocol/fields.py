"""Field validation: loose decoded msgpack in, typed message dataclasses out.

Each kind has a ``_to_*`` body builder and a ``_from_*`` validator; the two
tables at the bottom are the only place that knows the wire field names, so
``PROTOCOL.md`` can be checked against them.  Validators raise
:class:`~protocol.errors.MalformedMessage` naming the offending field.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from .errors import MalformedMessage
from .ids import MAX_OBJECT_ID, NodeId, ObjectId, RequestId
from .limits import MAX_DELETE_BATCH, MAX_NESTING_DEPTH, MAX_RESULTS
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
    SyncReply,
    SyncRequest,
)
from .values import PointerRef

__all__ = ["body_of", "message_from", "check_values", "uint", "object_id", "node_id", "optional_int"]

MAX_NAME_CHARS = 128


def _bad(field: str, expected: str) -> MalformedMessage:
    return MalformedMessage(f"field {field!r} must be {expected}", {"field": field})


def uint(value: object, field: str, limit: int = MAX_OBJECT_ID) -> int:
    """An unsigned integer no larger than ``limit``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _bad(field, f"an integer in [0, {limit}]")
    return value


def optional_int(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, "an integer or nil")
    return value


def object_id(value: object, field: str) -> ObjectId:
    return ObjectId(uint(value, field))


def node_id(value: object, field: str) -> NodeId:
    return NodeId(name(value, field))


def name(value: object, field: str) -> str:
    """A short non-empty string (ids, op names, roles)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        raise _bad(field, f"a string of 1 to {MAX_NAME_CHARS} characters")
    return value


def text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _bad(field, "a string")
    return value


def boolean(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(field, "a boolean")
    return value


def tensor(value: object, field: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _bad(field, "a tensor")
    return value


def array(value: object, field: str, max_len: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (max_len is not None and len(value) > max_len):
        limit = "" if max_len is None else f" of at most {max_len} items"
        raise _bad(field, "an array" + limit)
    return value


def string_map(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(field, "a map with string keys")
    return value


_LEAF_TYPES = (type(None), bool, int, float, str, bytes, torch.Tensor, PointerRef, slice, torch.dtype)


def check_values(root: object) -> None:
    """Refuse anything outside the value grammar, anywhere in the body.

    Containers nested deeper than :data:`MAX_NESTING_DEPTH`, map keys that
    are not strings, and values msgpack decodes by itself but the grammar
    does not have (its timestamp ext, -1) all raise ``MalformedMessage``.
    Iterative, so a hostile message cannot exhaust the Python stack.
    """
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > MAX_NESTING_DEPTH:
                raise MalformedMessage(
                    f"nesting deeper than {MAX_NESTING_DEPTH} levels",
                    {"limit": MAX_NESTING_DEPTH},
                )
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    raise MalformedMessage("map keys must be strings", {})
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif not (isinstance(item, _LEAF_TYPES) or item is Ellipsis):
            raise MalformedMessage(
                f"a {type(item).__name__} is not a wire value", {"type": type(item).__name__}
            )


def _get(body: Mapping[str, Any], key: str) -> Any:
    if key not in body:
        raise MalformedMessage(f"missing field {key!r}", {"field": key})
    return body[key]


def _info_body(info: ObjectInfo) -> dict[str, Any]:
    return {"object_id": info.object_id, "dtype": info.dtype, "shape": list(info.shape)}


def _info_from(value: object, field: str) -> ObjectInfo:
    item = string_map(value, field)
    shape = array(_get(item, "shape"), field + ".shape", 64)
    return ObjectInfo(
        object_id(_get(item, "object_id"), field + ".object_id"),
        name(_get(item, "dtype"), field + ".dtype"),
        tuple(uint(dim, field + ".shape") for dim in shape),
    )


def _infos_from(value: object, field: str) -> tuple[ObjectInfo, ...]:
    return tuple(_info_from(item, field) for item in array(value, field))


def _ids_from(value: object, field: str, max_len: int) -> tuple[ObjectId, ...]:
    return tuple(object_id(item, field) for item in array(value, field, max_len))


def _pointer_or_none(value: object, field: str) -> PointerRef | None:
    if value is not None and not isinstance(value, PointerRef):
        raise _bad(field, "a pointer or nil")
    return value


def _detail_map(value: object, field: str) -> dict[str, Any]:
    details = string_map(value, field)
    for key, item in details.items():
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise _bad(f"{field}.{key}", "a scalar")
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
    },
    MessageKind.PUT: lambda m: {"object_id": m.object_id, "value": m.value},
    MessageKind.GET: lambda m: {"object_id": m.object_id, "delete": m.delete},
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
}

_PARSERS: dict[MessageKind, _Parser] = {
    MessageKind.HELLO: lambda rid, b: HelloRequest(
        rid,
        int(b["v"]),
        name(_get(b, "client"), "client"),
        tuple(name(r, "roles") for r in array(_get(b, "roles"), "roles", 16)),
        string_map(_get(b, "credentials"), "credentials"),
    ),
    MessageKind.HELLO_REPLY: lambda rid, b: HelloReply(
        rid,
        node_id(_get(b, "node_id"), "node_id"),
        text(_get(b, "principal"), "principal"),
        tuple(name(r, "roles") for r in array(_get(b, "roles"), "roles", 16)),
        uint(_get(b, "max_message_bytes"), "max_message_bytes"),
    ),
    MessageKind.PUT: lambda rid, b: PutRequest(
        rid, object_id(_get(b, "object_id"), "object_id"), tensor(_get(b, "value"), "value")
    ),
    MessageKind.GET: lambda rid, b: GetRequest(
        rid,
        object_id(_get(b, "object_id"), "object_id"),
        boolean(b.get("delete", False), "delete"),
    ),
    MessageKind.GET_REPLY: lambda rid, b: GetReply(rid, tensor(_get(b, "value"), "value")),
    MessageKind.DELETE: lambda rid, b: DeleteRequest(
        rid, _ids_from(_get(b, "object_ids"), "object_ids", MAX_DELETE_BATCH)
    ),
    MessageKind.COMMAND: lambda rid, b: CommandRequest(
        rid,
        name(_get(b, "op"), "op"),
        _pointer_or_none(b.get("target"), "target"),
        tuple(array(_get(b, "args"), "args")),
        string_map(_get(b, "kwargs"), "kwargs"),
        _nonempty(_ids_from(_get(b, "results"), "results", MAX_RESULTS), "results"),
    ),
    MessageKind.SYNC: lambda rid, b: SyncRequest(rid),
    MessageKind.SYNC_REPLY: lambda rid, b: SyncReply(rid),
    MessageKind.LIST: lambda rid, b: ListRequest(rid),
    MessageKind.LIST_REPLY: lambda rid, b: ListReply(rid, _infos_from(_get(b, "objects"), "objects")),
    MessageKind.DESCRIBE: lambda rid, b: DescribeRequest(
        rid, _ids_from(_get(b, "object_ids"), "object_ids", MAX_DELETE_BATCH)
    ),
    MessageKind.DESCRIBE_REPLY: lambda rid, b: DescribeReply(
        rid, _infos_from(_get(b, "objects"), "objects")
    ),
    MessageKind.ERROR: lambda rid, b: ErrorReply(
        rid,
        name(_get(b, "code"), "code"),
        text(_get(b, "message"), "message"),
        _detail_map(b.get("details", {}), "details"),
    ),
}


def _nonempty(ids: tuple[ObjectId, ...], field: str) -> tuple[ObjectId, ...]:
    if not ids:
        raise _bad(field, "a non-empty array")
    return ids


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
