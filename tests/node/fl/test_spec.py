"""Model specs: allowlisted layers round-trip; everything else is refused early."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import msgpack
import pytest
import torch
from torch import nn

from node.fl.errors import SpecError, SpecTooLarge, StateMismatch, UnsupportedLayer
from node.fl.layers import LAYERS_BY_CLASS, MAX_FEATURES
from node.fl.spec import MAX_LAYERS, MAX_MODEL_ELEMENTS, LayerSpec, ModelSpec, build_model, model_to_spec, state_layout
from node.fl.layers import LayerName

Example = Tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]

EXAMPLES: Dict[str, Example] = {
    "linear": (lambda: nn.Linear(4, 3), lambda: torch.randn(2, 4)),
    "linear_nobias": (lambda: nn.Linear(4, 3, bias=False), lambda: torch.randn(2, 4)),
    "conv1d": (
        lambda: nn.Conv1d(2, 4, 3, stride=2, padding=1, groups=2, bias=False, padding_mode="reflect"),
        lambda: torch.randn(2, 2, 9),
    ),
    "conv2d": (
        lambda: nn.Conv2d(2, 4, (3, 2), padding="same", dilation=(1, 2), padding_mode="circular"),
        lambda: torch.randn(2, 2, 6, 6),
    ),
    "relu": (lambda: nn.ReLU(), lambda: torch.randn(2, 5)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), lambda: torch.randn(2, 5)),
    "sigmoid": (lambda: nn.Sigmoid(), lambda: torch.randn(2, 5)),
    "tanh": (lambda: nn.Tanh(), lambda: torch.randn(2, 5)),
    "gelu": (lambda: nn.GELU(approximate="tanh"), lambda: torch.randn(2, 5)),
    "silu": (lambda: nn.SiLU(), lambda: torch.randn(2, 5)),
    "elu": (lambda: nn.ELU(alpha=0.5), lambda: torch.randn(2, 5)),
    "softmax": (lambda: nn.Softmax(dim=1), lambda: torch.randn(2, 5)),
    "log_softmax": (lambda: nn.LogSoftmax(dim=-1), lambda: torch.randn(2, 5)),
    "identity": (lambda: nn.Identity(), lambda: torch.randn(2, 5)),
    "dropout": (lambda: nn.Dropout(0.3), lambda: torch.randn(2, 5)),
    "batch_norm1d": (lambda: nn.BatchNorm1d(4, momentum=None), lambda: torch.randn(3, 4)),
    "batch_norm2d": (lambda: nn.BatchNorm2d(3, eps=1e-3, affine=False), lambda: torch.randn(2, 3, 4, 4)),
    "layer_norm": (lambda: nn.LayerNorm((3, 4), bias=False), lambda: torch.randn(2, 3, 4)),
    "max_pool1d": (lambda: nn.MaxPool1d(2), lambda: torch.randn(2, 3, 8)),
    "max_pool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), lambda: torch.randn(1, 2, 7, 7)),
    "avg_pool1d": (
        lambda: nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False),
        lambda: torch.randn(2, 3, 8),
    ),
    "avg_pool2d": (lambda: nn.AvgPool2d(2, divisor_override=3), lambda: torch.randn(1, 2, 6, 6)),
    "flatten": (lambda: nn.Flatten(start_dim=1, end_dim=2), lambda: torch.randn(2, 3, 4, 5)),
    "embedding": (
        lambda: nn.Embedding(10, 3, padding_idx=0, max_norm=1.0),
        lambda: torch.randint(0, 10, (2, 5)),
    ),
}


def _randomize(model: nn.Module) -> None:
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:
                tensor.fill_(7)


def _wire(spec: ModelSpec) -> Any:
    return msgpack.unpackb(msgpack.packb(spec.to_wire()))


def test_examples_cover_every_allowlisted_layer() -> None:
    """The round-trip examples use every class in the allowlist table."""
    used = {type(make()) for make, _ in EXAMPLES.values()}
    assert used == set(LAYERS_BY_CLASS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layer_round_trips_with_identical_outputs(name: str) -> None:
    """model -> spec -> msgpack -> spec -> model gives the same state and the same outputs."""
    make, make_input = EXAMPLES[name]
    torch.manual_seed(0)
    model = nn.Sequential(make())
    _randomize(model)
    spec, state = model_to_spec(model)
    received = ModelSpec.from_wire(_wire(spec))
    rebuilt = build_model(received, state)
    assert received == spec
    assert type(rebuilt[0]) is type(model[0])
    assert list(rebuilt.state_dict()) == list(state)
    model.eval(), rebuilt.eval()
    x = make_input()
    assert torch.equal(model(x.clone()), rebuilt(x.clone()))


def test_state_is_copied_in_state_dict_order_with_buffers() -> None:
    """The state lists parameters and buffers in state_dict order, as copies."""
    linear = nn.Linear(3, 4)
    model = nn.Sequential(linear, nn.BatchNorm1d(4))
    spec, state = model_to_spec(model)
    assert list(state) == list(model.state_dict())
    assert "1.num_batches_tracked" in state and "1.running_var" in state
    state["0.weight"].zero_()
    assert bool(linear.weight.abs().sum() > 0)
    assert spec.elements == sum(t.numel() for t in state.values())


def test_build_model_leaves_global_rng_alone() -> None:
    """Building a model never draws from torch's global generator."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2)))
    before = torch.random.get_rng_state()
    build_model(spec, state)
    assert torch.equal(before, torch.random.get_rng_state())


def test_build_model_copies_state() -> None:
    """The rebuilt model does not share storage with the given state."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(2, 2)))
    weight = build_model(spec, state).state_dict()["0.weight"]
    weight.add_(1.0)
    assert not torch.equal(weight, state["0.weight"])


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class SneakyLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_custom_module_is_refused_naming_index_and_class() -> None:
    """A custom module is refused with its index and class name."""
    with pytest.raises(UnsupportedLayer) as caught:
        model_to_spec(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), Square()))
    assert caught.value.details["index"] == 2
    assert "Square" in str(caught.value.details["layer"])
    assert "layer 2" in str(caught.value) and "Linear" in str(caught.value)


def test_subclass_of_allowlisted_layer_is_refused() -> None:
    """A subclass of an allowlisted class (it may override forward) is refused."""
    with pytest.raises(UnsupportedLayer, match="SneakyLinear"):
        model_to_spec(nn.Sequential(SneakyLinear(2, 2)))


def test_nested_sequential_is_refused() -> None:
    """Nested containers are not layers."""
    with pytest.raises(UnsupportedLayer, match="Sequential"):
        model_to_spec(nn.Sequential(nn.Sequential(nn.Linear(2, 2))))


def test_non_sequential_model_is_refused() -> None:
    """Only an nn.Sequential becomes a spec."""
    with pytest.raises(SpecError, match="Sequential"):
        model_to_spec(nn.Linear(2, 2))


def test_extra_registered_parameter_is_refused() -> None:
    """State the layer arguments do not explain (an added parameter) is refused."""
    layer = nn.Linear(2, 2)
    layer.register_parameter("extra", nn.Parameter(torch.zeros(3)))
    with pytest.raises(SpecError, match="extra"):
        model_to_spec(nn.Sequential(layer))


def test_spec_errors_are_bad_requests() -> None:
    """Spec errors cross the wire as BAD_REQUEST."""
    from protocol.errors import BadRequest, ErrorCode

    assert issubclass(UnsupportedLayer, BadRequest) and SpecTooLarge.code is ErrorCode.BAD_REQUEST


def _linear(**args: object) -> List[Dict[str, object]]:
    return [{"layer": "Linear", "args": {"in_features": 4, "out_features": 2, **args}}]


def test_huge_linear_is_refused_before_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Linear beyond the element cap is refused by from_wire and by build_model, allocating nothing."""
    def no_allocation(*args: object, **kwargs: object) -> None:
        raise AssertionError("allocated")

    monkeypatch.setattr(nn.Module, "to_empty", no_allocation)
    monkeypatch.setattr(nn.Linear, "__init__", no_allocation)
    with pytest.raises(SpecTooLarge) as caught:
        ModelSpec.from_wire(_linear(in_features=MAX_FEATURES, out_features=MAX_FEATURES))
    assert caught.value.details["limit"] == MAX_MODEL_ELEMENTS
    forged = ModelSpec((LayerSpec(LayerName.LINEAR, (("in_features", 100_000), ("out_features", 100_000), ("bias", True))),), 0)
    with pytest.raises(SpecTooLarge):
        build_model(forged, {})


def test_cap_counts_all_layers_together() -> None:
    """Layers each under the cap are refused when their sum exceeds it."""
    layer = {"layer": "Embedding", "args": {"num_embeddings": 1_000_000, "embedding_dim": 10}}
    ModelSpec.from_wire([layer] * 5)
    with pytest.raises(SpecTooLarge):
        ModelSpec.from_wire([layer] * 6)


@pytest.mark.parametrize(
    ("args", "arg"),
    [
        ({"in_features": -1}, "in_features"),
        ({"in_features": 0}, "in_features"),
        ({"in_features": MAX_FEATURES + 1}, "in_features"),
        ({"in_features": "4"}, "in_features"),
        ({"in_features": 4.0}, "in_features"),
        ({"in_features": True}, "in_features"),
        ({"bias": 1}, "bias"),
        ({"device": "cuda"}, "device"),
        ({"dtype": "float64"}, "dtype"),
    ],
)
def test_bad_linear_arguments_are_refused(args: Dict[str, object], arg: str) -> None:
    """Negative, zero, oversized, mistyped and extra arguments are refused naming the argument."""
    with pytest.raises(SpecError) as caught:
        ModelSpec.from_wire(_linear(**args))
    assert caught.value.details["arg"] == arg
    assert caught.value.details["index"] == 0


@pytest.mark.parametrize("name", ["Module", "__import__", "linear", "Linear ", "Bilinear", "Sequential", 7])
def test_unknown_layer_names_are_refused(name: object) -> None:
    """Names outside the table are refused, and the error lists the valid ones."""
    with pytest.raises(SpecError, match="Linear") as caught:
        ModelSpec.from_wire([{"layer": name, "args": {}}])
    assert caught.value.details["index"] == 0


@pytest.mark.parametrize(
    "layer",
    [
        {"layer": "Conv2d", "args": {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}},
        {"layer": "Conv2d", "args": {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": "same"}},
        {"layer": "Conv2d", "args": {"in_channels": 2, "out_channels": 2, "kernel_size": [3, 3, 3]}},
        {"layer": "Conv1d", "args": {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding": "full"}},
        {"layer": "MaxPool2d", "args": {"kernel_size": 2, "padding": 2}},
        {"layer": "MaxPool2d", "args": {"kernel_size": 2, "return_indices": True}},
        {"layer": "Embedding", "args": {"num_embeddings": 4, "embedding_dim": 2, "sparse": True}},
        {"layer": "Embedding", "args": {"num_embeddings": 4, "embedding_dim": 2, "padding_idx": 4}},
        {"layer": "BatchNorm1d", "args": {"num_features": 4, "eps": float("nan")}},
        {"layer": "Dropout", "args": {"p": 1.5}},
        {"layer": "LeakyReLU", "args": {"negative_slope": float("inf")}},
        {"layer": "LayerNorm", "args": {"normalized_shape": []}},
        {"layer": "GELU", "args": {"approximate": "exact"}},
    ],
)
def test_inconsistent_or_out_of_range_arguments_are_refused(layer: Dict[str, object]) -> None:
    """Cross-argument rules and ranges torch would enforce late (or never) are checked up front."""
    with pytest.raises(SpecError):
        ModelSpec.from_wire([layer])


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        [],
        "Linear",
        [["Linear", {}]],
        [{"layer": "ReLU", "args": [], }],
        [{"layer": "ReLU", "args": {}, "code": "print(1)"}],
        [{"layer": "ReLU"}] * (MAX_LAYERS + 1),
    ],
)
def test_malformed_spec_structure_is_refused(value: object) -> None:
    """Wrong containers, extra keys and too many layers are refused."""
    with pytest.raises(SpecError):
        ModelSpec.from_wire(value)


def test_missing_arguments_take_torch_defaults() -> None:
    """Arguments left out on the wire take torch's defaults."""
    spec = ModelSpec.from_wire([{"layer": "Linear", "args": {"in_features": 3, "out_features": 2}}, {"layer": "ReLU"}])
    assert dict(spec.layers[0].args)["bias"] is True
    assert state_layout(spec) == {"0.weight": ((2, 3), torch.float32), "0.bias": ((2,), torch.float32)}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.pop("0.bias"), "missing"),
        (lambda s: s.update({"0.other": torch.zeros(2)}), "not a state tensor"),
        (lambda s: s.update({"0.weight": torch.zeros(3, 3)}), "shape"),
        (lambda s: s.update({"0.weight": torch.zeros(2, 3, dtype=torch.float64)}), "dtype"),
        (lambda s: s.update({"0.weight": [[0.0] * 3] * 2}), "expected a tensor"),
    ],
)
def test_state_is_checked_strictly(change: Callable[[Dict[str, Any]], object], reason: str) -> None:
    """Missing, extra, mis-shaped, mistyped and non-tensor state entries are refused."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(3, 2)))
    changed: Dict[str, Any] = dict(state)
    change(changed)
    with pytest.raises(StateMismatch, match=reason):
        build_model(spec, changed)
