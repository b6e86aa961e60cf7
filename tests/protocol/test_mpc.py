"""The secret-sharing kinds round-trip through the codec; malformed fields get BAD_MESSAGE."""

from __future__ import annotations

from dataclasses import fields
from typing import Any
from unittest.mock import patch

import pytest
import torch

import protocol.codec
from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import BadTensor, MalformedMessage
from protocol.fields import body_of
from protocol.ids import RequestId
from protocol.messages import Message, MessageKind
from protocol.mpc import (
    COMPARE_ROUND_BASE,
    MAX_COMPARE_ROUNDS,
    MAX_OPEN_VALUES,
    CompareRoute,
    MpcDealRequest,
    MpcOpenRequest,
    MpcStepRequest,
    OpenRound,
    StepOp,
    TruncationScheme,
    WireCompare,
)
from tests.protocol.mpc_examples import EXAMPLES, PARTIES, SESSION


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda k: k.value)
def test_round_trip(kind: MessageKind) -> None:
    """Every mpc kind decodes to an equal message (tensors compared by value)."""
    message = EXAMPLES[kind]
    decoded = decode_message(encode_message_bytes(message))
    assert type(decoded) is type(message)
    for field in fields(message):
        assert _same(getattr(decoded, field.name), getattr(message, field.name)), field.name


def test_abort_open_round_trips() -> None:
    """An abort opening carries its reason and no values."""
    message = MpcOpenRequest(RequestId(2), SESSION, 0, OpenRound.TRUNCATION, (), "party 0 gave up")
    decoded = decode_message(encode_message_bytes(message))
    assert isinstance(decoded, MpcOpenRequest) and decoded.abort == "party 0 gave up" and decoded.values == ()


def _mutated(message: Message, **changes: Any) -> bytes:
    """``message`` encoded by the real encoder with some body fields replaced."""
    body = body_of(message)
    body.update(changes)
    with patch.object(protocol.codec, "body_of", lambda _: dict(body)):
        return encode_message_bytes(message)


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        (MessageKind.MPC_STEP, {"session": b"short"}),
        (MessageKind.MPC_STEP, {"op": "divide"}),
        (MessageKind.MPC_STEP, {"truncation": "none"}),
        (MessageKind.MPC_STEP, {"bits": 63}),
        (MessageKind.MPC_STEP, {"timeout": 0}),
        (MessageKind.MPC_STEP, {"timeout": 10_000}),
        (MessageKind.MPC_STEP, {"party": 64}),
        (MessageKind.MPC_STEP, {"parties": [{"node": "bob", "url": "wss://bob:1", "fingerprint": "sha256:" + "0" * 64}]}),
        (MessageKind.MPC_STEP, {"parties": [{"node": "bob", "url": "http://bob:1", "fingerprint": "sha256:" + "0" * 64}] * 2}),
        (MessageKind.MPC_DEAL, {"specs": []}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "cube"}]}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "truncation", "shape": [2], "bits": 0}]}),
        (MessageKind.MPC_MATERIAL, {"seed": bytes(20)}),
        (MessageKind.MPC_OPEN, {"round": 66}),
        (MessageKind.MPC_OPEN, {"round": True}),
        (MessageKind.MPC_OPEN, {"values": [torch.zeros(1, dtype=torch.int64)] * 17}),
        (MessageKind.MPC_STEP, {"width": 1}),
        (MessageKind.MPC_STEP, {"width": 65}),
        (MessageKind.MPC_STEP, {"width": True}),
        (MessageKind.MPC_STEP, {"route": "yao"}),
        (MessageKind.MPC_STEP, {"route": 1}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "compare", "shape": [2], "width": 1, "relu": False, "route": "fss"}]}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "compare", "shape": [2], "width": 65, "relu": False, "route": "fss"}]}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "compare", "shape": [2], "width": 32, "relu": 1, "route": "fss"}]}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "compare", "shape": [2], "width": 32, "relu": False, "route": "gc"}]}),
        (MessageKind.MPC_DEAL, {"specs": [{"type": "compare", "shape": [2], "width": False, "relu": False, "route": "a2b"}]}),
        (MessageKind.MPC_OPEN, {"abort": "x" * 513}),
        (MessageKind.MPC_SPLIT, {"precision": 32}),
        (MessageKind.MPC_SPLIT, {"parties": []}),
    ],
)
def test_malformed_fields_are_bad_message(kind: MessageKind, changes: dict[str, Any]) -> None:
    """Out-of-range or mistyped mpc fields are refused by the decoder, naming the field."""
    with pytest.raises(MalformedMessage) as caught:
        decode_message(_mutated(EXAMPLES[kind], **changes))
    named = caught.value.details.get("field")
    assert isinstance(named, str) and named.split(".")[0] in changes


def test_openings_must_be_ring_tensors() -> None:
    """Masked values and explicit material must be int64 ring tensors (BAD_TENSOR otherwise)."""
    with pytest.raises(BadTensor):
        decode_message(_mutated(EXAMPLES[MessageKind.MPC_OPEN], values=[torch.zeros(2)]))
    with pytest.raises(BadTensor):
        decode_message(_mutated(EXAMPLES[MessageKind.MPC_MATERIAL], explicit=[torch.zeros(2)]))


def test_step_enums_are_closed_sets() -> None:
    """A step's enums are the closed sets the spec lists."""
    assert {op.value for op in StepOp} == {"mul", "matmul", "conv2d", "truncate", "drelu", "relu"}
    assert {s.value for s in TruncationScheme} == {"local", "dealer"}
    assert {r.value for r in CompareRoute} == {"fss", "a2b"}


@pytest.mark.parametrize("route", list(CompareRoute), ids=lambda r: r.value)
@pytest.mark.parametrize("relu", [False, True])
def test_compare_deal_round_trips(route: CompareRoute, relu: bool) -> None:
    """A compare spec keeps its shape, width, relu flag (a real boolean) and route."""
    spec = WireCompare((3, 65536), 64, relu, route)
    message = MpcDealRequest(RequestId(3), SESSION, PARTIES, (spec,))
    decoded = decode_message(encode_message_bytes(message))
    assert isinstance(decoded, MpcDealRequest) and decoded.specs == (spec,)
    assert type(decoded.specs[0].relu) is bool  # type: ignore[union-attr]
    assert body_of(message)["specs"][0] == {
        "type": "compare", "shape": [3, 65536], "width": 64, "relu": relu, "route": route.value,
    }


def test_compare_step_round_trips_with_width_and_route() -> None:
    """A drelu step carries its width and route; a product step carries width 0 and no route."""
    product = EXAMPLES[MessageKind.MPC_STEP]
    assert isinstance(product, MpcStepRequest)
    assert body_of(product)["width"] == 0 and body_of(product)["route"] is None
    step = MpcStepRequest(
        RequestId(4), SESSION, 1, PARTIES, product.dealer, StepOp.DRELU, product.x, None, None, 0,
        TruncationScheme.LOCAL, product.result, 12.5, 32, CompareRoute.FSS,
    )
    decoded = decode_message(encode_message_bytes(step))
    assert decoded == step


def test_a_step_without_width_and_route_decodes_as_a_product() -> None:
    """``width`` and ``route`` are optional: a peer that omits them sends width 0, no route."""
    body = body_of(EXAMPLES[MessageKind.MPC_STEP])
    del body["width"], body["route"]
    with patch.object(protocol.codec, "body_of", lambda _: dict(body)):
        data = encode_message_bytes(EXAMPLES[MessageKind.MPC_STEP])
    decoded = decode_message(data)
    assert isinstance(decoded, MpcStepRequest) and decoded.width == 0 and decoded.route is None


@pytest.mark.parametrize("round", [0, 1, COMPARE_ROUND_BASE, COMPARE_ROUND_BASE + MAX_COMPARE_ROUNDS - 1])
def test_open_rounds_of_comparisons_round_trip(round: int) -> None:
    """Rounds 0 and 1 keep their meaning; 2 + k carries round k of a comparison, with up to 16 tensors."""
    values = tuple(torch.full((2,), k, dtype=torch.int64) for k in range(MAX_OPEN_VALUES))
    message = MpcOpenRequest(RequestId(5), SESSION, 1, round, values)
    decoded = decode_message(encode_message_bytes(message))
    assert isinstance(decoded, MpcOpenRequest) and decoded.round == round
    assert all(torch.equal(a, b) for a, b in zip(decoded.values, values))
    assert OpenRound(0) is OpenRound.BEAVER and OpenRound(1) is OpenRound.TRUNCATION


def test_the_spec_documents_comparisons_exactly() -> None:
    """PROTOCOL.md names every step op, route and comparison limit with its value, and the compare spec's fields."""
    from dataclasses import fields as dataclass_fields

    import protocol.mpc as mpc
    from tests.protocol.spec_text import spec_text

    text = spec_text()
    section = text[text.index("### 6.37 `mpc_deal`") : text.index("### 6.38")]
    for field in dataclass_fields(WireCompare):
        assert any(line.startswith(f"| `{field.name}` |") for line in section.splitlines()), field.name
    step = text[text.index("### 6.39 `mpc_step`") : text.index("### 6.40")]
    op_row = next(line for line in step.splitlines() if line.startswith("| `op` |"))
    assert all(f"`{op.value}`" in op_row for op in StepOp)
    route_row = next(line for line in step.splitlines() if line.startswith("| `route` |"))
    assert all(f"`{r.value}`" in route_row for r in CompareRoute)
    for name in ("MIN_COMPARE_WIDTH", "MAX_COMPARE_WIDTH", "COMPARE_ROUND_BASE", "MAX_COMPARE_ROUNDS", "MAX_OPEN_VALUES"):
        assert f"`{name}`" in text, name
    assert f"`{mpc.MIN_COMPARE_WIDTH} .. {mpc.MAX_COMPARE_WIDTH}` (`MIN_COMPARE_WIDTH` .. `MAX_COMPARE_WIDTH`)" in section
    open_section = text[text.index("### 6.40 `mpc_open`") : text.index("### 6.41")]
    last = COMPARE_ROUND_BASE + MAX_COMPARE_ROUNDS - 1
    assert f"`0 .. {last}`" in open_section and f"at most {MAX_OPEN_VALUES} (`MAX_OPEN_VALUES`)" in open_section
