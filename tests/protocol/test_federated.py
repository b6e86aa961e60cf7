"""The federated kinds: every malformed field is BAD_MESSAGE naming it; dataset ids are fixed."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import MalformedMessage
from protocol.federated import (
    MAX_STATE_TENSORS,
    JobStatusReply,
    RoundRecord,
    TrainReply,
    TrainRequest,
    dataset_object_ids,
)
from protocol.messages import MessageKind
from tests.protocol.federated_examples import EXAMPLES
from tests.protocol.test_codec import rewrite, round_trip, split_frame

TRAIN = EXAMPLES[MessageKind.TRAIN]
SUBMIT = EXAMPLES[MessageKind.JOB_SUBMIT]
STATUS = EXAMPLES[MessageKind.JOB_STATUS_REPLY]
REPLY = EXAMPLES[MessageKind.TRAIN_REPLY]

BAD: list[tuple[str, Any, Callable[[dict[str, Any]], None], str]] = [
    ("train without dataset", TRAIN, lambda b: b.pop("dataset"), "dataset"),
    ("spec not an array", TRAIN, lambda b: b.update(spec={"layer": "Linear"}), "spec"),
    ("spec layer not a map", TRAIN, lambda b: b.update(spec=["Linear"]), "spec"),
    ("spec too long", TRAIN, lambda b: b.update(spec=[{}] * 257), "spec"),
    ("state value not a tensor", TRAIN, lambda b: b.update(state={"0.weight": [1.0]}), "state.0.weight"),
    ("too many state tensors", TRAIN,
     lambda b: b.update(state={str(i): 0 for i in range(MAX_STATE_TENSORS + 1)}), "state"),
    ("hyperparameter not a scalar", TRAIN, lambda b: b.update(hyperparameters={"lr": [0.1]}), "hyperparameters.lr"),
    ("seed beyond 63 bits", TRAIN, lambda b: b.update(job_seed=2**63), "job_seed"),
    ("negative round", TRAIN, lambda b: b.update(round=-1), "round"),
    ("owner index beyond 255", TRAIN, lambda b: b.update(owner_index=256), "owner_index"),
    ("bool as round", TRAIN, lambda b: b.update(round=True), "round"),
    ("no owners", SUBMIT, lambda b: b.update(owners=[]), "owners"),
    ("owner url with a path", SUBMIT,
     lambda b: b["owners"][0].update(url="wss://a:1/x"), "owners.url"),
    ("owner fingerprint", SUBMIT, lambda b: b["owners"][0].update(fingerprint="sha256:AB"), "owners.fingerprint"),
    ("zero rounds", SUBMIT, lambda b: b.update(rounds=0), "rounds"),
    ("zero min participants", SUBMIT, lambda b: b.update(min_participants=0), "min_participants"),
    ("infinite deadline", SUBMIT, lambda b: b.update(round_timeout=float("inf")), "round_timeout"),
    ("negative deadline", SUBMIT, lambda b: b.update(round_timeout=-1.0), "round_timeout"),
    ("unknown status", STATUS, lambda b: b.update(status="paused"), "status"),
    ("NaN loss in history", STATUS, lambda b: b["history"][0].update(train_loss=float("nan")), "history.train_loss"),
    ("long dropout reason", STATUS,
     lambda b: b["history"][0]["dropped"][0].update(reason="x" * 513), "history.dropped.reason"),
    ("job id not a name", TRAIN, lambda b: b.update(job_id=""), "job_id"),
    ("negative epsilon", REPLY, lambda b: b.update(epsilon=-0.5), "epsilon"),
    ("infinite epsilon left", REPLY, lambda b: b.update(epsilon_remaining=float("inf")), "epsilon_remaining"),
    ("epsilon as a bool", REPLY, lambda b: b.update(epsilon=True), "epsilon"),
    ("privacy owner beyond 255", STATUS,
     lambda b: b["history"][0]["privacy"][0].update(owner=256), "history.privacy.owner"),
    ("privacy without remaining", STATUS,
     lambda b: b["history"][0]["privacy"][0].pop("remaining"), "remaining"),
    ("NaN epsilon in history", STATUS,
     lambda b: b["history"][0]["privacy"][0].update(epsilon=float("nan")), "history.privacy.epsilon"),
]


@pytest.mark.parametrize("message, change, field", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_federated_fields_are_refused_naming_the_field(message: Any, change: Any, field: str) -> None:
    """Each broken field is a MalformedMessage whose details name it."""
    with pytest.raises(MalformedMessage) as caught:
        decode_message(rewrite(message, change))
    assert caught.value.details.get("field") == field


def test_optional_metrics_and_error_may_be_nil() -> None:
    """train_reply.heldout and job_status_reply.error are nil when absent."""
    reply = round_trip(EXAMPLES[MessageKind.TRAIN_REPLY].__class__(EXAMPLES[MessageKind.TRAIN_REPLY].id, {}, 3, 0.5, None))
    assert reply.heldout is None  # type: ignore[union-attr]
    status = round_trip(JobStatusReply(STATUS.id, "j", STATUS.status, 1, (), None))
    assert isinstance(status, JobStatusReply) and status.error is None and status.history == ()


def test_privacy_fields_are_optional_and_omitted_when_nil() -> None:
    """A train_reply without DP and a round without charges omit the fields; frames without them decode."""
    plain = TrainReply(REPLY.id, {}, 3, 0.5, None)
    body, _ = split_frame(encode_message_bytes(plain))
    assert "epsilon" not in body and "epsilon_remaining" not in body
    decoded = round_trip(plain)
    assert isinstance(decoded, TrainReply) and decoded.epsilon is None and decoded.epsilon_remaining is None
    charged = round_trip(REPLY)
    assert isinstance(charged, TrainReply) and (charged.epsilon, charged.epsilon_remaining) == (0.75, 9.25)
    request = round_trip(TrainRequest(TRAIN.id, "d", (), {}, {}, 0, 0, 0))
    assert isinstance(request, TrainRequest) and request.job_id is None
    record = RoundRecord(0, (0,), (), 1, 0.5, None, 0.1)
    status = round_trip(JobStatusReply(STATUS.id, "j", STATUS.status, 1, (record,), None))
    assert isinstance(status, JobStatusReply) and status.history[0].privacy == ()
    assert round_trip(STATUS) == STATUS


def test_state_tensors_keep_their_order_and_bits() -> None:
    """State maps round-trip key order and exact values (FedAvg is bit-for-bit)."""
    state = {"b": torch.tensor([0.1, -0.0, 1e-38]), "a": torch.tensor([3], dtype=torch.int64)}
    decoded = round_trip(TrainRequest(TRAIN.id, "d", (), state, {}, 0, 0, 0))
    assert isinstance(decoded, TrainRequest) and list(decoded.state) == ["b", "a"]
    assert all(torch.equal(decoded.state[k], state[k]) for k in state)


def test_dataset_object_ids_are_fixed_distinct_and_nonzero() -> None:
    """Features and labels of a dataset have stable, different, non-zero 63-bit ids."""
    x, y = dataset_object_ids("breast_cancer")
    assert (x, y) == dataset_object_ids("breast_cancer")
    assert x != y and 0 < x < 2**63 and 0 < y < 2**63
    assert dataset_object_ids("digits")[0] != x
