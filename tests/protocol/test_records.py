"""Node records on the wire: a dataset's announced training policy is optional and validated."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import MalformedMessage
from protocol.ids import NodeId, RequestId
from protocol.messages import RegisterRequest
from protocol.records import DatasetPolicy, DatasetSummary, NodeRecord
from tests.protocol.test_codec import rewrite, round_trip, split_frame

FP = "sha256:" + "cd" * 32
POLICY = DatasetPolicy(True, 10.0, 7.5, 1e-5, 1.0, 1.0, 16, 32, 3, 1_000_000, ("Linear", "ReLU"))


def _register(*datasets: DatasetSummary) -> RegisterRequest:
    return RegisterRequest(RequestId(1), NodeRecord(NodeId("alice"), "wss://a.example:1", FP, datasets=datasets))


WITH_POLICY = _register(DatasetSummary("d", (), "", (2,), 40, POLICY))


def _policy(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda body: change(body["record"]["datasets"][0]["policy"])


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("policy not a map", lambda b: b["record"]["datasets"][0].update(policy=[1]), "record.datasets.policy"),
    ("dp missing", _policy(lambda p: p.pop("dp")), "dp"),
    ("dp not a bool", _policy(lambda p: p.update(dp=1)), "record.datasets.policy.dp"),
    ("negative epsilon", _policy(lambda p: p.update(epsilon=-1.0)), "record.datasets.policy.epsilon"),
    ("NaN remaining", _policy(lambda p: p.update(epsilon_remaining=float("nan"))),
     "record.datasets.policy.epsilon_remaining"),
    ("delta as text", _policy(lambda p: p.update(delta="1e-5")), "record.datasets.policy.delta"),
    ("negative min batch", _policy(lambda p: p.update(min_batch=-1)), "record.datasets.policy.min_batch"),
    ("bool as owners", _policy(lambda p: p.update(secure_min_owners=True)),
     "record.datasets.policy.secure_min_owners"),
    ("layers not an array", _policy(lambda p: p.update(allowed_layers="Linear")),
     "record.datasets.policy.allowed_layers"),
    ("too many layers", _policy(lambda p: p.update(allowed_layers=["Linear"] * 65)),
     "record.datasets.policy.allowed_layers"),
    ("empty layer name", _policy(lambda p: p.update(allowed_layers=[""])), "record.datasets.policy.allowed_layers"),
]


@pytest.mark.parametrize("change, field", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_policy_fields_are_refused_naming_the_field(change: Any, field: str) -> None:
    """Each broken policy field is a MalformedMessage whose details name its path."""
    with pytest.raises(MalformedMessage) as caught:
        decode_message(rewrite(WITH_POLICY, change))
    assert caught.value.details.get("field") == field


def test_a_policy_round_trips_and_is_omitted_when_absent() -> None:
    """A summary's policy survives the wire; a summary without one has no policy key at all."""
    assert round_trip(WITH_POLICY) == WITH_POLICY
    bare = _register(DatasetSummary("d", (), "", (2,), 40))
    body, _ = split_frame(encode_message_bytes(bare))
    assert "policy" not in body["record"]["datasets"][0]
    decoded = round_trip(bare)
    assert isinstance(decoded, RegisterRequest) and decoded.record.datasets[0].policy is None


def test_a_policy_with_dp_off_carries_no_budget() -> None:
    """dp false with nil epsilon, delta and noise decodes as such; missing counts take their defaults."""
    off = _register(DatasetSummary("d", policy=DatasetPolicy(False)))
    decoded = round_trip(off)
    assert isinstance(decoded, RegisterRequest)
    policy = decoded.record.datasets[0].policy
    assert policy == DatasetPolicy(False) and policy.epsilon is None and policy.allowed_layers is None
    minimal = rewrite(off, lambda b: b["record"]["datasets"][0].update(policy={"dp": False}))
    decoded = decode_message(minimal)
    assert isinstance(decoded, RegisterRequest) and decoded.record.datasets[0].policy == DatasetPolicy(False)
