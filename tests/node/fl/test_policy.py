"""The owner's training policy: safe defaults, one parser for files and flags, the rules it checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from node.fl.hyperparameters import Hyperparameters
from node.fl.layers import LayerName
from node.fl.policy import (
    DEFAULT_POLICY,
    POLICY_KEYS,
    DpPolicy,
    PolicyError,
    PolicyRefused,
    PolicyRule,
    TrainingPolicy,
    load_policy_file,
    policy_from_mapping,
)
from node.fl.spec import ModelSpec, model_to_spec
from protocol.errors import ErrorCode


def _spec(*layers: torch.nn.Module) -> ModelSpec:
    return model_to_spec(torch.nn.Sequential(*layers))[0]


SMALL = _spec(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
HYPER = Hyperparameters(0.1, batch_size=32)


def test_the_defaults_are_safe() -> None:
    """Without a policy: DP-SGD on (sigma 1, C 1, epsilon 10), min batch 16, 32 rows, 1M elements, plain allowed."""
    dp = DEFAULT_POLICY.dp
    assert dp is not None and (dp.noise_multiplier, dp.max_grad_norm, dp.epsilon) == (1.0, 1.0, 10.0)
    assert (DEFAULT_POLICY.min_batch, DEFAULT_POLICY.min_samples) == (16, 32)
    assert DEFAULT_POLICY.max_model_elements == 1_000_000
    assert DEFAULT_POLICY.secure_min_owners == 0 and DEFAULT_POLICY.allowed_layers is None
    assert policy_from_mapping({}, "flags") == DEFAULT_POLICY


def test_default_delta_stays_well_below_one_over_n() -> None:
    """delta is min(1e-5, n^-1.1): 1e-5 for small datasets, below 1/n for big ones; a set delta is kept."""
    dp = DpPolicy()
    assert dp.delta_for(455) == 1e-5
    assert dp.delta_for(1_000_000) == pytest.approx(1_000_000 ** -1.1)
    assert dp.delta_for(1_000_000) < 1e-6
    assert DpPolicy(delta=1e-7).delta_for(10) == 1e-7


def test_every_key_is_read() -> None:
    """A mapping sets every rule; integers become floats where a number is meant; layers match any case."""
    policy = policy_from_mapping({
        "epsilon": 3, "delta": 1e-6, "noise_multiplier": 2, "max_grad_norm": 0.5, "min_batch": 64,
        "min_samples": 100, "secure_aggregation_min_owners": 3, "max_model_elements": 5000,
        "allowed_layers": ["linear", "ReLU"],
    }, "test")
    assert policy.dp == DpPolicy(2.0, 0.5, 3.0, 1e-6)
    assert isinstance(policy.dp.epsilon, float)
    assert (policy.min_batch, policy.min_samples, policy.secure_min_owners, policy.max_model_elements) == (
        64, 100, 3, 5000)
    assert policy.allowed_layers == frozenset({LayerName.LINEAR, LayerName.RELU})
    assert policy_from_mapping({"allowed_layers": "Linear, Sigmoid"}, "t").allowed_layers == frozenset(
        {LayerName.LINEAR, LayerName.SIGMOID})
    assert policy_from_mapping({"dp": False, "min_batch": 1}, "t").dp is None


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"espilon": 3}, "espilon", "unknown key"),
    ({"dp": "no"}, "dp", "true or false"),
    ({"dp": False, "epsilon": 3}, "epsilon", "does not apply when dp is false"),
    ({"dp": False, "noise_multiplier": 1.0}, "noise_multiplier", "does not apply"),
    ({"epsilon": 0}, "epsilon", "(0, 1e+06]"),
    ({"epsilon": float("inf")}, "epsilon", "(0, 1e+06]"),
    ({"epsilon": True}, "epsilon", "(0, 1e+06]"),
    ({"delta": 1.0}, "delta", "(0, 1)"),
    ({"delta": 0}, "delta", "(0, 1)"),
    ({"noise_multiplier": -1}, "noise_multiplier", "(0,"),
    ({"max_grad_norm": "1"}, "max_grad_norm", "(0,"),
    ({"min_batch": 0}, "min_batch", "[1,"),
    ({"min_batch": 2.5}, "min_batch", "integer"),
    ({"min_samples": True}, "min_samples", "integer"),
    ({"secure_aggregation_min_owners": 1}, "secure_aggregation_min_owners", "0 (plain train allowed) or"),
    ({"secure_aggregation_min_owners": 257}, "secure_aggregation_min_owners", "[2, 256]"),
    ({"max_model_elements": 0}, "max_model_elements", "[1, 50000000]"),
    ({"max_model_elements": 10**9}, "max_model_elements", "[1, 50000000]"),
    ({"allowed_layers": []}, "allowed_layers", "at least one"),
    ({"allowed_layers": ["Linear", "Lambda"]}, "allowed_layers", "unknown layer 'Lambda'"),
    ({"allowed_layers": 3}, "allowed_layers", "a list of layer names"),
]


@pytest.mark.parametrize("values, key, reason", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_values_are_one_line_errors_naming_the_key(values: dict[str, Any], key: str, reason: str) -> None:
    """Every bad value is a PolicyError naming its source and key, in one line."""
    with pytest.raises(PolicyError) as caught:
        policy_from_mapping(values, "policy file 'x.toml'")
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert caught.value.message.startswith(f"policy file 'x.toml': {key}: ")
    assert "\n" not in caught.value.message


def test_policy_files_in_json_and_toml(tmp_path: Path) -> None:
    """A .json object or a .toml table reads into the same policy; keys it omits take the defaults."""
    (tmp_path / "p.json").write_text(json.dumps({"epsilon": 3, "min_batch": 32}))
    (tmp_path / "p.toml").write_text("epsilon = 3\nmin_batch = 32\n")
    expected = TrainingPolicy(dp=DpPolicy(epsilon=3.0), min_batch=32)
    assert load_policy_file(tmp_path / "p.json") == expected
    assert load_policy_file(tmp_path / "p.toml") == expected
    (tmp_path / "off.toml").write_text('dp = false\nsecure_aggregation_min_owners = 3\nallowed_layers = ["Linear"]\n')
    off = load_policy_file(tmp_path / "off.toml")
    assert off.dp is None and off.secure_min_owners == 3 and off.min_batch == 16


@pytest.mark.parametrize("name, text, reason", [
    ("p.yaml", "epsilon: 3", "expected a .json or .toml file"),
    ("p.json", '{"epsilon": 3', "not valid json"),
    ("p.json", "[1, 2]", "expected a map of policy keys"),
    ("p.toml", "epsilon = ", "not valid toml"),
    ("missing.toml", None, "cannot read it"),
])
def test_unreadable_policy_files_are_one_line_errors(tmp_path: Path, name: str, text: str | None, reason: str) -> None:
    """Wrong extension, bad syntax, a non-map and a missing file each say so, naming the file."""
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert reason in caught.value.message and str(path) in caught.value.message
    assert "\n" not in caught.value.message


def _refused(policy: TrainingPolicy, spec: ModelSpec = SMALL, hyper: Hyperparameters = HYPER,
             secure: bool = False, samples: int = 400) -> PolicyRefused:
    with pytest.raises(PolicyRefused) as caught:
        policy.check("cancer", spec, hyper, secure=secure, samples=samples)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    assert caught.value.message.startswith("the training policy of dataset 'cancer' refuses this: ")
    return caught.value


def test_each_rule_refuses_naming_itself_and_its_limit() -> None:
    """Layers, size, secure only, batch and samples: PERMISSION_DENIED with the rule and its limit."""
    layers = _refused(TrainingPolicy(allowed_layers=frozenset({LayerName.LINEAR})))
    assert layers.details["rule"] == PolicyRule.ALLOWED_LAYERS.value and "layer 1 (ReLU)" in layers.message
    size = _refused(TrainingPolicy(max_model_elements=100))
    assert size.details == {"dataset": "cancer", "rule": "max_model_elements", "limit": 100}
    assert "257 elements" in size.message
    secure = _refused(TrainingPolicy(secure_min_owners=3))
    assert secure.details["rule"] == "secure_aggregation_min_owners" and secure.details["limit"] == 3
    batch = _refused(DEFAULT_POLICY, hyper=Hyperparameters(0.1, batch_size=8))
    assert batch.details["rule"] == "min_batch" and "below the minimum of 16" in batch.message
    rows = _refused(DEFAULT_POLICY, samples=31)
    assert rows.details["rule"] == "min_samples" and "31" not in rows.message  # the count stays out


def test_a_policy_allows_what_it_does_not_refuse() -> None:
    """The defaults take a small model, a secure or plain train, batch 16 and 32 rows."""
    DEFAULT_POLICY.check("d", SMALL, Hyperparameters(0.1, batch_size=16), secure=False, samples=32)
    TrainingPolicy(secure_min_owners=2).check("d", SMALL, HYPER, secure=True, samples=400)
    allowed = frozenset({LayerName.LINEAR, LayerName.RELU})
    TrainingPolicy(dp=None, min_batch=1, min_samples=1, allowed_layers=allowed).check(
        "d", SMALL, Hyperparameters(0.1, batch_size=1), secure=False, samples=1)


def test_the_attack_model_is_refused_by_size_only_when_it_is_big() -> None:
    """A wide first layer fits the default size cap for a tiny dataset: the defaults rely on DP, not size."""
    wide = _spec(torch.nn.Linear(30, 2000), torch.nn.ReLU(), torch.nn.Linear(2000, 1))
    DEFAULT_POLICY.check("d", wide, HYPER, secure=False, samples=400)
    huge = _spec(torch.nn.Linear(30, 40_000), torch.nn.ReLU(), torch.nn.Linear(40_000, 1))
    assert _refused(DEFAULT_POLICY, spec=huge).details["rule"] == "max_model_elements"


def test_summary_and_description_carry_limits_only() -> None:
    """The announced policy and the log line say the limits, delta and budget left."""
    summary = DEFAULT_POLICY.summary(455, 7.5)
    assert (summary.dp, summary.epsilon, summary.epsilon_remaining, summary.delta) == (True, 10.0, 7.5, 1e-5)
    assert (summary.min_batch, summary.min_samples, summary.secure_min_owners) == (16, 32, 0)
    assert summary.max_model_elements == 1_000_000 and summary.allowed_layers is None
    off = TrainingPolicy(dp=None, secure_min_owners=3, allowed_layers=frozenset({LayerName.RELU, LayerName.LINEAR}))
    assert off.summary(455, None).epsilon is None and off.summary(455, None).allowed_layers == ("Linear", "ReLU")
    assert "DP off" in off.describe(455) and ">= 3 owners" in off.describe(455)
    assert "epsilon 10 delta 1e-05" in DEFAULT_POLICY.describe(455)


def test_policy_keys_are_the_documented_ones() -> None:
    """The keys a file may set are exactly the node flags' (README and --help list them)."""
    from node.__main__ import POLICY_FLAGS

    assert set(POLICY_KEYS) == set(POLICY_FLAGS)
