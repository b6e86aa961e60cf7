"""Declarative model specs: an ``nn.Sequential`` of allowlisted layers as data.

Owns :class:`ModelSpec` (the msgpack-friendly description of a model),
:func:`model_to_spec` (a built model -> spec + state tensors) and
:func:`build_model` (spec + state -> model).  A spec from the wire is
untrusted: :meth:`ModelSpec.from_wire` checks every layer name against the
table in :mod:`node.fl.layers`, every argument's type and range, refuses
unknown or extra arguments, and adds up the parameter and buffer elements
the layers would allocate *before* anything is allocated (at most
:data:`MAX_MODEL_ELEMENTS`, 50M elements = 200 MB of float32, and
:data:`MAX_LAYERS` layers).  Models are built on the ``meta`` device first,
the state is checked key by key (names, shapes, dtypes) against that
skeleton, and only then is memory allocated and the state copied in, so
building never draws from torch's global random generator.

Wire form: a list of ``{"layer": name, "args": {arg: value}}`` where a value
is an int, float, bool, str, nil (optional arguments such as BatchNorm's
``momentum``) or a list of ints (torch's tuples).  Specs made here always
list every argument; on the wire, missing arguments take torch's defaults.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from .errors import SpecError, SpecTooLarge, StateMismatch, UnsupportedLayer
from .layers import LAYERS, LAYERS_BY_CLASS, ArgRefused, ArgValue, LayerDef, LayerName

__all__ = [
    "MAX_LAYERS",
    "MAX_MODEL_ELEMENTS",
    "LayerSpec",
    "ModelSpec",
    "State",
    "model_to_spec",
    "build_model",
    "state_layout",
]

MAX_LAYERS = 256
"""Most layers in one spec."""

MAX_MODEL_ELEMENTS = 50_000_000
"""Most parameter plus buffer elements a spec may allocate (200 MB as float32)."""

State = Dict[str, torch.Tensor]
"""State tensors by ``state_dict`` key, in ``state_dict`` order."""

_WIRE_KEYS = frozenset({"layer", "args"})


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One layer: its allowlisted name and every constructor argument, checked."""

    layer: LayerName
    args: Tuple[Tuple[str, ArgValue], ...]

    def to_wire(self) -> Dict[str, object]:
        args = {k: list(v) if isinstance(v, tuple) else v for k, v in self.args}
        return {"layer": self.layer.value, "args": args}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A checked model spec; build one with :meth:`from_wire` or :func:`model_to_spec`."""

    layers: Tuple[LayerSpec, ...]
    elements: int
    """Parameter and buffer elements the model allocates."""

    def to_wire(self) -> List[Dict[str, object]]:
        return [layer.to_wire() for layer in self.layers]

    def sha256(self) -> str:
        """Hex SHA-256 of the canonical encoding: :meth:`to_wire` as JSON, keys sorted, no spaces.

        Every argument is listed (defaults filled in), so two specs that
        build the same model have the same digest; owners' audit trails name
        models by it.
        """
        canonical = json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def from_wire(cls, value: object) -> ModelSpec:
        """Check an untrusted spec completely; raises :class:`SpecError` subclasses."""
        if not isinstance(value, (list, tuple)):
            raise SpecError.for_spec(f"expected a list of layers, got {type(value).__name__}")
        if not 1 <= len(value) <= MAX_LAYERS:
            raise SpecError.for_spec(f"expected 1 to {MAX_LAYERS} layers, got {len(value)}")
        layers: List[LayerSpec] = []
        total = 0
        for index, item in enumerate(value):
            layer, elements = _check_layer(index, item)
            total += elements
            if total > MAX_MODEL_ELEMENTS:
                raise SpecTooLarge.for_elements(total, MAX_MODEL_ELEMENTS)
            layers.append(layer)
        return cls(tuple(layers), total)


def _check_layer(index: int, item: object) -> Tuple[LayerSpec, int]:
    if not isinstance(item, dict) or not set(item) <= _WIRE_KEYS or "layer" not in item:
        raise SpecError.for_layer(index, "?", "expected a map with 'layer' and 'args'")
    name = item["layer"]
    try:
        definition = LAYERS[LayerName(name)] if type(name) is str else None
    except ValueError:
        definition = None
    if definition is None or type(name) is not str:
        raise UnsupportedLayer.for_layer_name(index, repr(name)[:80], (n.value for n in LAYERS))
    raw = item.get("args", {})
    if not isinstance(raw, dict):
        raise SpecError.for_layer(index, name, "'args' must be a map")
    args = _check_args(index, definition, raw)
    reason = definition.relations(args)
    if reason is not None:
        raise SpecError.for_layer(index, name, reason)
    return LayerSpec(definition.name, tuple(args.items())), definition.elements(args)


def _check_args(index: int, definition: LayerDef, raw: Mapping[object, object]) -> Dict[str, ArgValue]:
    name = definition.name.value
    known = {arg.name for arg in definition.args}
    for key in raw:
        if key not in known:
            valid = ", ".join(arg.name for arg in definition.args) or "none"
            raise SpecError.for_arg(index, name, str(key), raw[key], f"unknown argument; valid: {valid}")
    args: Dict[str, ArgValue] = {}
    for arg in definition.args:
        value = raw.get(arg.name, arg.default)
        try:
            args[arg.name] = arg.check(value)
        except ArgRefused as exc:
            raise SpecError.for_arg(index, name, arg.name, value, str(exc)) from None
    return args


def _read_layer(index: int, module: nn.Module) -> Dict[str, object]:
    definition = LAYERS_BY_CLASS.get(type(module))
    if definition is None:
        kind = type(module)
        shown = kind.__qualname__ if kind.__module__.startswith("torch.") else f"{kind.__module__}.{kind.__qualname__}"
        raise UnsupportedLayer.for_layer_name(index, shown, (n.value for n in LAYERS))
    args = {}
    for arg in definition.args:
        value = arg.read(module) if arg.read is not None else getattr(module, arg.name)
        args[arg.name] = list(value) if isinstance(value, tuple) else value
    return {"layer": definition.name.value, "args": args}


def model_to_spec(model: nn.Module) -> Tuple[ModelSpec, State]:
    """The spec of an ``nn.Sequential`` of allowlisted layers and a copy of its state.

    Raises :class:`UnsupportedLayer` naming the index and class of the first
    layer outside the allowlist (custom modules and subclasses included), and
    :class:`SpecError` if a layer carries state its arguments do not explain.
    """
    if type(model) is not nn.Sequential:
        raise SpecError.for_spec(f"a model must be a torch.nn.Sequential, got {type(model).__qualname__}")
    spec = ModelSpec.from_wire([_read_layer(i, m) for i, m in enumerate(model)])
    state = {key: tensor.detach().clone() for key, tensor in model.state_dict().items()}
    try:
        _check_state(_skeleton(spec), state)
    except StateMismatch as exc:
        raise SpecError.for_spec(f"the model carries state its layers' arguments do not explain: {exc}") from None
    return spec, state


def _skeleton(spec: ModelSpec) -> nn.Sequential:
    """The model on the meta device: shapes and dtypes, no memory, no RNG draws."""
    modules = []
    for index, layer in enumerate(spec.layers):
        try:
            with torch.device("meta"):
                modules.append(LAYERS[layer.layer].cls(**dict(layer.args)))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SpecError.for_layer(index, layer.layer.value, f"torch refused the arguments: {exc}") from None
    return nn.Sequential(*modules)


def state_layout(spec: ModelSpec) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """Expected state keys (in order) with their shapes and dtypes, without allocating."""
    return {k: (tuple(t.shape), t.dtype) for k, t in _skeleton(spec).state_dict().items()}


def _check_state(skeleton: nn.Module, state: Mapping[str, object]) -> None:
    expected = skeleton.state_dict()
    if not isinstance(state, Mapping):
        raise StateMismatch.for_key("", "the state must be a map of tensors")
    for key in expected:
        if key not in state:
            raise StateMismatch.for_key(key, "missing")
    for key, tensor in state.items():
        want = expected.get(key)
        if want is None:
            raise StateMismatch.for_key(str(key), "not a state tensor of this model")
        if not isinstance(tensor, torch.Tensor):
            raise StateMismatch.for_key(key, f"expected a tensor, got {type(tensor).__name__}")
        if tensor.shape != want.shape:
            raise StateMismatch.for_key(key, f"shape {tuple(tensor.shape)}, expected {tuple(want.shape)}")
        if tensor.dtype != want.dtype:
            raise StateMismatch.for_key(key, f"dtype {tensor.dtype}, expected {want.dtype}")


def build_model(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> nn.Sequential:
    """A CPU model from a spec and its state (copied, never shared).

    The spec is checked again (a hand-made :class:`ModelSpec` gets the same
    limits as one from the wire) and the state is checked strictly before
    any memory is allocated.
    """
    checked = ModelSpec.from_wire(spec.to_wire())
    model = _skeleton(checked)
    _check_state(model, state)
    # The checked state's copies become the parameters and buffers (assign): ``to_empty``
    # would allocate through torch's Python reference ops on meta tensors, whose first
    # use imports sympy (0.3 s of a data owner's start-up, and of a client's first model).
    copies = {key: tensor.detach().clone(memory_format=torch.contiguous_format) for key, tensor in state.items()}
    model.load_state_dict(copies, strict=True, assign=True)
    return model
