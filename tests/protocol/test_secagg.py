"""The secure-aggregation kinds: every malformed field is refused naming it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, cast

import pytest
import torch

from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import BadTensor, MalformedMessage
from protocol.federated import TrainRequest
from protocol.messages import MessageKind
from protocol.secagg import SecaggShareRequest, SecaggSumReply, SecureTrain
from tests.protocol.federated_examples import EXAMPLES as FEDERATED
from tests.protocol.secagg_examples import EXAMPLES
from tests.protocol.test_codec import rewrite, round_trip

SETUP = EXAMPLES[MessageKind.SECAGG_SETUP]
SPLIT = EXAMPLES[MessageKind.SECAGG_SPLIT]
SHARE = cast(SecaggShareRequest, EXAMPLES[MessageKind.SECAGG_SHARE])
SUM = EXAMPLES[MessageKind.SECAGG_SUM]
REPLY = cast(SecaggSumReply, EXAMPLES[MessageKind.SECAGG_SUM_REPLY])
TRAIN = FEDERATED[MessageKind.TRAIN]

BAD: list[tuple[str, Any, Callable[[dict[str, Any]], None], str]] = [
    ("short round id", SETUP, lambda b: b.update(round=bytes(8)), "round"),
    ("owner index beyond 255", SETUP, lambda b: b["owners"][0].update(owner=256), "owners.owner"),
    ("bad sender fingerprint", SETUP, lambda b: b["owners"][0].update(fingerprint="x"), "owners.fingerprint"),
    ("infinite timeout", SETUP, lambda b: b.update(timeout=float("inf")), "timeout"),
    ("one party", SPLIT, lambda b: b.update(parties=b["parties"][:1]), "parties"),
    ("party url with a path", SPLIT, lambda b: b["parties"][0].update(url="wss://a:1/x"), "parties.url"),
    ("neither seed nor values", SHARE, lambda b: b.update(seed=None), "seed"),
    ("seed of 20 bytes", SHARE, lambda b: b.update(seed=bytes(20)), "seed"),
    ("no shapes", SHARE, lambda b: b.update(shapes={}), "shapes"),
    ("repeated owners", SUM, lambda b: b.update(owners=[1, 1]), "owners"),
    ("check not a bool", SUM, lambda b: b.update(check=1), "check"),
    ("secure precision beyond 31", TRAIN, lambda b: b.update(secure={"round": bytes(16), "precision": 32}),
     "secure.precision"),
]


@pytest.mark.parametrize("message, change, field", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_secagg_fields_are_refused_naming_the_field(message: Any, change: Any, field: str) -> None:
    """Each broken field is a MalformedMessage whose details name it."""
    with pytest.raises(MalformedMessage) as caught:
        decode_message(rewrite(message, change))
    assert caught.value.details.get("field") == field


def _ring(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int64)


@pytest.mark.parametrize("message, field", [
    (replace(SHARE, values={"0.weight": _ring(1, 2), "0.bias": _ring(1)}), "seed"),
    (replace(SHARE, seed=None, values={"0.weight": _ring(2, 2), "0.bias": _ring(1)}), "values.0.weight"),
    (replace(SHARE, seed=None, values={"0.bias": _ring(1), "0.weight": _ring(1, 2)}), "values"),
], ids=["seed and values", "values of another shape", "values in another order"])
def test_explicit_shares_must_match_their_shapes(message: Any, field: str) -> None:
    """Explicit values replace the seed and follow shapes exactly."""
    with pytest.raises(MalformedMessage) as caught:
        decode_message(encode_message_bytes(message))
    assert caught.value.details.get("field") == field


def test_shares_and_sums_must_be_int64_ring_tensors() -> None:
    """A float tensor in a share or a sum reply is BAD_TENSOR."""
    with pytest.raises(BadTensor):
        decode_message(encode_message_bytes(replace(REPLY, sum={"w": torch.zeros(2)})))
    with pytest.raises(BadTensor):
        decode_message(encode_message_bytes(replace(SHARE, seed=None, values={"0.weight": torch.zeros(1, 2),
                                                                              "0.bias": _ring(1)})))


def test_train_carries_its_secure_section_and_defaults_to_none() -> None:
    """train.secure round-trips; absent, it is None (plain FedAvg)."""
    secure = TrainRequest(TRAIN.id, "d", (), {}, {}, 0, 0, 0, SecureTrain(bytes(range(16)), 20))
    decoded = round_trip(secure)
    assert isinstance(decoded, TrainRequest) and decoded.secure == SecureTrain(bytes(range(16)), 20)
    plain = decode_message(rewrite(TRAIN, lambda b: b.pop("secure")))
    assert isinstance(plain, TrainRequest) and plain.secure is None
