"""Wire fields of the secret-sharing kinds (:mod:`protocol.mpc`).

The counterpart of :mod:`protocol.fields` for ``mpc_split``,
``mpc_split_reply``, ``mpc_deal``, ``mpc_material``, ``mpc_step`` and
``mpc_open``; :mod:`protocol.fields` merges these tables into its own.
Shapes are checked for their form here; whether two shapes fit an op is the
receiving node's business.  Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import BadTensor
from .kinds import MessageKind
from .mpc import (
    COMPARE_ROUND_BASE,
    MAX_COMPARE_ROUNDS,
    MAX_COMPARE_WIDTH,
    MAX_OPEN_ERROR_CHARS,
    MAX_OPEN_VALUES,
    MIN_COMPARE_WIDTH,
    MAX_PARTIES,
    MAX_PRECISION_BITS,
    MAX_SESSION_BYTES,
    MAX_SPECS,
    MAX_STEP_TIMEOUT,
    MAX_TRUNCATION_BITS,
    SESSION_BYTES,
    BilinearKind,
    CompareRoute,
    DealerRef,
    MpcDealRequest,
    MpcMaterialRequest,
    MpcOpenRequest,
    MpcSplitReply,
    MpcSplitRequest,
    MpcStepRequest,
    PartyAddress,
    SplitTarget,
    StepOp,
    TruncationScheme,
    WireCompare,
    WireConv,
    WireSpec,
    WireTriple,
    WireTruncation,
)
from .record_fields import address_body, addresses_from, fingerprint, node_url
from .transfers import TICKET_BYTES
from .validate import (
    Builder,
    Parser,
    array,
    bad,
    blob,
    boolean,
    choice,
    name,
    node_id,
    object_id,
    required,
    seconds,
    seed,
    shape,
    string_map,
    tensor,
    tensor_dtype,
    text,
    uint,
)

if TYPE_CHECKING:
    import torch

__all__ = ["MPC_BODIES", "MPC_PARSERS"]



def _session(value: object, field: str = "session") -> bytes:
    return blob(value, field, SESSION_BYTES, MAX_SESSION_BYTES)


def _pair(value: object, field: str) -> tuple[int, int]:
    items = array(value, field, 2)
    if len(items) != 2:
        raise bad(field, "an array of 2 integers")
    return (uint(items[0], field, 2**31), uint(items[1], field, 2**31))


def _target_body(target: SplitTarget) -> dict[str, Any]:
    return {
        "node": target.node,
        "url": target.url,
        "fingerprint": target.fingerprint,
        "object_id": target.object_id,
        "ticket": target.ticket,
    }


def _target_from(value: object, field: str) -> SplitTarget:
    item = string_map(value, field)
    return SplitTarget(
        node_id(required(item, "node"), field + ".node"),
        node_url(required(item, "url"), field + ".url"),
        fingerprint(required(item, "fingerprint"), field + ".fingerprint"),
        object_id(required(item, "object_id"), field + ".object_id"),
        blob(required(item, "ticket"), field + ".ticket", TICKET_BYTES, TICKET_BYTES),
    )


def _targets_from(value: object, field: str) -> tuple[SplitTarget, ...]:
    targets = tuple(_target_from(t, field) for t in array(value, field, MAX_PARTIES))
    if len(targets) < 2:
        raise bad(field, f"an array of 2 to {MAX_PARTIES} parties")
    return targets


def _dealer_body(dealer: DealerRef | None) -> dict[str, Any] | None:
    return None if dealer is None else {"node": dealer.node, "fingerprint": dealer.fingerprint}


def _dealer_from(value: object, field: str) -> DealerRef | None:
    if value is None:
        return None
    item = string_map(value, field)
    return DealerRef(
        node_id(required(item, "node"), field + ".node"),
        fingerprint(required(item, "fingerprint"), field + ".fingerprint"),
    )


def _conv_body(conv: WireConv | None) -> dict[str, Any] | None:
    if conv is None:
        return None
    return {
        "stride": list(conv.stride),
        "padding": list(conv.padding),
        "dilation": list(conv.dilation),
        "groups": conv.groups,
    }


def _conv_from(value: object, field: str) -> WireConv | None:
    if value is None:
        return None
    item = string_map(value, field)
    return WireConv(
        _pair(required(item, "stride"), field + ".stride"),
        _pair(required(item, "padding"), field + ".padding"),
        _pair(required(item, "dilation"), field + ".dilation"),
        uint(required(item, "groups"), field + ".groups", 2**31),
    )


def _spec_body(spec: WireSpec) -> dict[str, Any]:
    if isinstance(spec, WireTriple):
        return {
            "type": "triple",
            "op": spec.op.value,
            "x_shape": list(spec.x_shape),
            "y_shape": list(spec.y_shape),
            "conv": _conv_body(spec.conv),
        }
    if isinstance(spec, WireCompare):
        return {
            "type": "compare",
            "shape": list(spec.shape),
            "width": spec.width,
            "relu": spec.relu,
            "route": spec.route.value,
        }
    return {"type": "truncation", "shape": list(spec.shape), "bits": spec.bits}


def _spec_from(value: object, field: str) -> WireSpec:
    item = string_map(value, field)
    kind = required(item, "type")
    if kind == "triple":
        return WireTriple(
            choice(BilinearKind, required(item, "op"), field + ".op"),
            shape(required(item, "x_shape"), field + ".x_shape"),
            shape(required(item, "y_shape"), field + ".y_shape"),
            _conv_from(item.get("conv"), field + ".conv"),
        )
    if kind == "truncation":
        return WireTruncation(
            shape(required(item, "shape"), field + ".shape"),
            _bits(required(item, "bits"), field + ".bits", 1),
        )
    if kind == "compare":
        return WireCompare(
            shape(required(item, "shape"), field + ".shape"),
            _width(required(item, "width"), field + ".width"),
            boolean(required(item, "relu"), field + ".relu"),
            choice(CompareRoute, required(item, "route"), field + ".route"),
        )
    raise bad(field + ".type", "'triple', 'truncation' or 'compare'")


def _width(value: object, field: str) -> int:
    width = uint(value, field, MAX_COMPARE_WIDTH)
    if width < MIN_COMPARE_WIDTH:
        raise bad(field, f"an integer in [{MIN_COMPARE_WIDTH}, {MAX_COMPARE_WIDTH}]")
    return width


def _step_width(value: object) -> int:
    """``mpc_step.width``: 0 (no comparison) or a comparison's width; absent is 0."""
    if value is None:
        return 0
    width = uint(value, "width", MAX_COMPARE_WIDTH)
    if width == 1:
        raise bad("width", f"0 or an integer in [{MIN_COMPARE_WIDTH}, {MAX_COMPARE_WIDTH}]")
    return width


def _route(value: object) -> CompareRoute | None:
    return None if value is None else choice(CompareRoute, value, "route")


def _specs_from(value: object, field: str) -> tuple[WireSpec, ...]:
    specs = tuple(_spec_from(s, field) for s in array(value, field, MAX_SPECS))
    if not specs:
        raise bad(field, f"an array of 1 to {MAX_SPECS} specs")
    return specs


def _bits(value: object, field: str, low: int) -> int:
    bits = uint(value, field, MAX_TRUNCATION_BITS)
    if bits < low:
        raise bad(field, f"an integer in [{low}, {MAX_TRUNCATION_BITS}]")
    return bits


def _ring_tensors(value: object, field: str, max_len: int) -> tuple[torch.Tensor, ...]:
    items = tuple(tensor(t, field) for t in array(value, field, max_len))
    for item in items:
        if tensor_dtype(item) != "int64":
            raise BadTensor(f"field {field!r} must hold int64 ring tensors", {"field": field})
    return items


def _party_index(value: object, field: str) -> int:
    return uint(value, field, MAX_PARTIES - 1)


def _optional_object(value: object, field: str) -> Any:
    return None if value is None else object_id(value, field)


def _error_text(value: object, field: str) -> str | None:
    if value is None:
        return None
    message = text(value, field)
    if len(message) > MAX_OPEN_ERROR_CHARS:
        raise bad(field, f"a string of at most {MAX_OPEN_ERROR_CHARS} characters, or nil")
    return message


MPC_BODIES: dict[MessageKind, Builder] = {
    MessageKind.MPC_SPLIT: lambda m: {
        "object_id": m.object_id,
        "precision": m.precision,
        "parties": [_target_body(t) for t in m.parties],
    },
    MessageKind.MPC_SPLIT_REPLY: lambda m: {
        "dtype": m.dtype,
        "shape": list(m.shape),
        "precision": m.precision,
    },
    MessageKind.MPC_DEAL: lambda m: {
        "session": m.session,
        "parties": [address_body(p) for p in m.parties],
        "specs": [_spec_body(s) for s in m.specs],
    },
    MessageKind.MPC_MATERIAL: lambda m: {
        "session": m.session,
        "party": m.party,
        "n_parties": m.n_parties,
        "specs": [_spec_body(s) for s in m.specs],
        "seed": m.seed,
        "explicit": list(m.explicit),
    },
    MessageKind.MPC_STEP: lambda m: {
        "session": m.session,
        "party": m.party,
        "parties": [address_body(p) for p in m.parties],
        "dealer": _dealer_body(m.dealer),
        "op": m.op.value,
        "x": m.x,
        "y": m.y,
        "conv": _conv_body(m.conv),
        "bits": m.bits,
        "truncation": m.truncation.value,
        "result": m.result,
        "timeout": m.timeout,
        "width": m.width,
        "route": None if m.route is None else m.route.value,
    },
    MessageKind.MPC_OPEN: lambda m: {
        "session": m.session,
        "party": m.party,
        "round": int(m.round),
        "values": list(m.values),
        "abort": m.abort,
    },
}

MPC_PARSERS: dict[MessageKind, Parser] = {
    MessageKind.MPC_SPLIT: lambda rid, b: MpcSplitRequest(
        rid,
        object_id(required(b, "object_id"), "object_id"),
        uint(required(b, "precision"), "precision", MAX_PRECISION_BITS),
        _targets_from(required(b, "parties"), "parties"),
    ),
    MessageKind.MPC_SPLIT_REPLY: lambda rid, b: MpcSplitReply(
        rid,
        name(required(b, "dtype"), "dtype"),
        shape(required(b, "shape"), "shape"),
        uint(required(b, "precision"), "precision", MAX_PRECISION_BITS),
    ),
    MessageKind.MPC_DEAL: lambda rid, b: MpcDealRequest(
        rid,
        _session(required(b, "session")),
        addresses_from(PartyAddress, required(b, "parties"), "parties", MAX_PARTIES),
        _specs_from(required(b, "specs"), "specs"),
    ),
    MessageKind.MPC_MATERIAL: lambda rid, b: MpcMaterialRequest(
        rid,
        _session(required(b, "session")),
        _party_index(required(b, "party"), "party"),
        uint(required(b, "n_parties"), "n_parties", MAX_PARTIES),
        _specs_from(required(b, "specs"), "specs"),
        seed(b.get("seed"), "seed"),
        _ring_tensors(b.get("explicit", []), "explicit", 2 * MAX_SPECS),
    ),
    MessageKind.MPC_STEP: lambda rid, b: MpcStepRequest(
        rid,
        _session(required(b, "session")),
        _party_index(required(b, "party"), "party"),
        addresses_from(PartyAddress, required(b, "parties"), "parties", MAX_PARTIES),
        _dealer_from(b.get("dealer"), "dealer"),
        choice(StepOp, required(b, "op"), "op"),
        object_id(required(b, "x"), "x"),
        _optional_object(b.get("y"), "y"),
        _conv_from(b.get("conv"), "conv"),
        _bits(required(b, "bits"), "bits", 0),
        choice(TruncationScheme, required(b, "truncation"), "truncation"),
        object_id(required(b, "result"), "result"),
        seconds(required(b, "timeout"), "timeout", MAX_STEP_TIMEOUT),
        _step_width(b.get("width")),
        _route(b.get("route")),
    ),
    MessageKind.MPC_OPEN: lambda rid, b: MpcOpenRequest(
        rid,
        _session(required(b, "session")),
        _party_index(required(b, "party"), "party"),
        uint(required(b, "round"), "round", COMPARE_ROUND_BASE + MAX_COMPARE_ROUNDS - 1),
        _ring_tensors(required(b, "values"), "values", MAX_OPEN_VALUES),
        _error_text(b.get("abort"), "abort"),
    ),
}
