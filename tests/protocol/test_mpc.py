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
from protocol.mpc import MpcOpenRequest, OpenRound, StepOp, TruncationScheme
from tests.protocol.mpc_examples import EXAMPLES, SESSION


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
        (MessageKind.MPC_OPEN, {"round": 2}),
        (MessageKind.MPC_OPEN, {"values": [torch.zeros(1, dtype=torch.int64)] * 3}),
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
    assert {op.value for op in StepOp} == {"mul", "matmul", "conv2d", "truncate"}
    assert {s.value for s in TruncationScheme} == {"local", "dealer"}
