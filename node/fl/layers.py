"""The allowlist of layers a model spec may use, as an explicit table.

Owns :data:`LAYERS`: for each allowlisted ``torch.nn`` class, its spec name,
every constructor argument with a checker (type and range), how to read the
argument back from a built module, how many parameter and buffer elements
the layer allocates (computed from the checked arguments, before any
allocation) and the cross-argument rules torch would otherwise only enforce
late.  Classes are looked up by exact type, never by ``getattr(torch.nn, name)``
and never by ``isinstance`` (a subclass may override ``forward``).

Limits on single arguments live with the checkers in :mod:`node.fl.arguments`
(sizes at most :data:`MAX_FEATURES`, kernels :data:`MAX_KERNEL`).

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple

from torch import nn

from .arguments import (
    MAX_DIM_INDEX,
    MAX_FEATURES,
    MAX_KERNEL,
    ArgRefused,
    ArgValue,
    Check,
    boolean,
    choice,
    false_only,
    integer,
    ints,
    optional,
    padding,
    real,
    size,
)

__all__ = [
    "ArgValue",
    "Args",
    "ArgRefused",
    "Arg",
    "LayerName",
    "LayerDef",
    "LAYERS",
    "LAYERS_BY_CLASS",
    "MAX_FEATURES",
    "MAX_KERNEL",
    "MAX_DIM_INDEX",
]

Args = Mapping[str, ArgValue]
Reader = Callable[[nn.Module], object]


# -- typed access to checked arguments (our own invariant) ---------------------


def _int(args: Args, name: str) -> int:
    value = args[name]
    assert type(value) is int
    return value


def _flag(args: Args, name: str) -> int:
    return 1 if args[name] is True else 0


def _each(args: Args, name: str, dims: int) -> Tuple[int, ...]:
    value = args[name]
    if type(value) is int:
        return (value,) * dims
    assert isinstance(value, tuple)
    return value


# -- the table ----------------------------------------------------------------


class LayerName(str, enum.Enum):
    """Spec names: exactly the ``torch.nn`` class names."""

    LINEAR = "Linear"
    CONV1D = "Conv1d"
    CONV2D = "Conv2d"
    RELU = "ReLU"
    LEAKY_RELU = "LeakyReLU"
    SIGMOID = "Sigmoid"
    TANH = "Tanh"
    GELU = "GELU"
    SILU = "SiLU"
    ELU = "ELU"
    SOFTMAX = "Softmax"
    LOG_SOFTMAX = "LogSoftmax"
    IDENTITY = "Identity"
    DROPOUT = "Dropout"
    BATCH_NORM1D = "BatchNorm1d"
    BATCH_NORM2D = "BatchNorm2d"
    LAYER_NORM = "LayerNorm"
    MAX_POOL1D = "MaxPool1d"
    MAX_POOL2D = "MaxPool2d"
    AVG_POOL1D = "AvgPool1d"
    AVG_POOL2D = "AvgPool2d"
    FLATTEN = "Flatten"
    EMBEDDING = "Embedding"


@dataclass(frozen=True, slots=True)
class Arg:
    """One constructor argument: checker, default, and how to read it back."""

    name: str
    check: Check
    default: ArgValue
    read: Optional[Reader] = None


def _none(args: Args) -> Optional[str]:
    return None


def _zero(args: Args) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class LayerDef:
    """An allowlisted layer: class, arguments, allocation size, cross-argument rules."""

    name: LayerName
    cls: type[nn.Module]
    args: Tuple[Arg, ...] = ()
    elements: Callable[[Args], int] = _zero
    relations: Callable[[Args], Optional[str]] = _none


def _has_bias(module: nn.Module) -> bool:
    return getattr(module, "bias", None) is not None


_FEATURES = integer(1, MAX_FEATURES)
_INPLACE = Arg("inplace", boolean, False)
_DIM = integer(-MAX_DIM_INDEX, MAX_DIM_INDEX)


def _linear_elements(args: Args) -> int:
    out = _int(args, "out_features")
    return _int(args, "in_features") * out + out * _flag(args, "bias")


def _conv(name: LayerName, cls: type[nn.Module], dims: int) -> LayerDef:
    def elements(args: Args) -> int:
        kernel = math.prod(_each(args, "kernel_size", dims))
        out = _int(args, "out_channels")
        per_group = _int(args, "in_channels") // _int(args, "groups")
        return out * per_group * kernel + out * _flag(args, "bias")

    def relations(args: Args) -> Optional[str]:
        groups = _int(args, "groups")
        if _int(args, "in_channels") % groups or _int(args, "out_channels") % groups:
            return "in_channels and out_channels must be divisible by groups"
        if args["padding"] == "same" and any(s != 1 for s in _each(args, "stride", dims)):
            return "padding 'same' needs stride 1"
        return None

    return LayerDef(
        name,
        cls,
        (
            Arg("in_channels", _FEATURES, 1),
            Arg("out_channels", _FEATURES, 1),
            Arg("kernel_size", size(dims), 1),
            Arg("stride", size(dims), 1),
            Arg("padding", padding(dims), 0),
            Arg("dilation", size(dims), 1),
            Arg("groups", _FEATURES, 1),
            Arg("bias", boolean, True, _has_bias),
            Arg("padding_mode", choice("zeros", "reflect", "replicate", "circular"), "zeros"),
        ),
        elements,
        relations,
    )


def _batch_norm(name: LayerName, cls: type[nn.Module]) -> LayerDef:
    def elements(args: Args) -> int:
        features = _int(args, "num_features")
        return 2 * features * _flag(args, "affine") + (2 * features + 1) * _flag(
            args, "track_running_stats"
        )

    return LayerDef(
        name,
        cls,
        (
            Arg("num_features", _FEATURES, 1),
            Arg("eps", real(0.0, 1.0, open_low=True), 1e-5),
            Arg("momentum", optional(real(0.0, 1.0)), 0.1),
            Arg("affine", boolean, True),
            Arg("track_running_stats", boolean, True),
        ),
        elements,
    )


def _layer_norm_elements(args: Args) -> int:
    shape = _each(args, "normalized_shape", 1)
    return math.prod(shape) * _flag(args, "elementwise_affine") * (1 + _flag(args, "bias"))


def _pool_relations(dims: int, dilated: bool) -> Callable[[Args], Optional[str]]:
    def relations(args: Args) -> Optional[str]:
        kernels = _each(args, "kernel_size", dims)
        dilation = _each(args, "dilation", dims) if dilated else (1,) * dims
        for kernel, pad, step in zip(kernels, _each(args, "padding", dims), dilation):
            if 2 * pad > (kernel - 1) * step + 1:
                return "padding must be at most half of the (dilated) kernel size"
        return None

    return relations


def _max_pool(name: LayerName, cls: type[nn.Module], dims: int) -> LayerDef:
    args = (
        Arg("kernel_size", size(dims), 1),
        Arg("stride", optional(size(dims)), None),
        Arg("padding", size(dims, 0), 0),
        Arg("dilation", size(dims), 1),
        Arg("return_indices", false_only, False),
        Arg("ceil_mode", boolean, False),
    )
    return LayerDef(name, cls, args, relations=_pool_relations(dims, True))


def _avg_pool(name: LayerName, cls: type[nn.Module], dims: int) -> LayerDef:
    args: Tuple[Arg, ...] = (
        Arg("kernel_size", size(dims), 1),
        Arg("stride", optional(size(dims)), None),
        Arg("padding", size(dims, 0), 0),
        Arg("ceil_mode", boolean, False),
        Arg("count_include_pad", boolean, True),
    )
    if dims == 2:
        args += (Arg("divisor_override", optional(integer(1, MAX_KERNEL**2)), None),)
    return LayerDef(name, cls, args, relations=_pool_relations(dims, False))


def _embedding_relations(args: Args) -> Optional[str]:
    index, count = args["padding_idx"], _int(args, "num_embeddings")
    if type(index) is int and not -count <= index < count:
        return "padding_idx must be within num_embeddings"
    return None


_DEFS: Tuple[LayerDef, ...] = (
    LayerDef(
        LayerName.LINEAR,
        nn.Linear,
        (
            Arg("in_features", _FEATURES, 1),
            Arg("out_features", _FEATURES, 1),
            Arg("bias", boolean, True, _has_bias),
        ),
        _linear_elements,
    ),
    _conv(LayerName.CONV1D, nn.Conv1d, 1),
    _conv(LayerName.CONV2D, nn.Conv2d, 2),
    LayerDef(LayerName.RELU, nn.ReLU, (_INPLACE,)),
    LayerDef(
        LayerName.LEAKY_RELU, nn.LeakyReLU, (Arg("negative_slope", real(-1e6, 1e6), 0.01), _INPLACE)
    ),
    LayerDef(LayerName.SIGMOID, nn.Sigmoid),
    LayerDef(LayerName.TANH, nn.Tanh),
    LayerDef(LayerName.GELU, nn.GELU, (Arg("approximate", choice("none", "tanh"), "none"),)),
    LayerDef(LayerName.SILU, nn.SiLU, (_INPLACE,)),
    LayerDef(LayerName.ELU, nn.ELU, (Arg("alpha", real(-1e6, 1e6), 1.0), _INPLACE)),
    LayerDef(LayerName.SOFTMAX, nn.Softmax, (Arg("dim", optional(_DIM), None),)),
    LayerDef(LayerName.LOG_SOFTMAX, nn.LogSoftmax, (Arg("dim", optional(_DIM), None),)),
    LayerDef(LayerName.IDENTITY, nn.Identity),
    LayerDef(LayerName.DROPOUT, nn.Dropout, (Arg("p", real(0.0, 1.0), 0.5), _INPLACE)),
    _batch_norm(LayerName.BATCH_NORM1D, nn.BatchNorm1d),
    _batch_norm(LayerName.BATCH_NORM2D, nn.BatchNorm2d),
    LayerDef(
        LayerName.LAYER_NORM,
        nn.LayerNorm,
        (
            Arg("normalized_shape", ints(range(1, 9), 1, MAX_FEATURES), 1),
            Arg("eps", real(0.0, 1.0, open_low=True), 1e-5),
            Arg("elementwise_affine", boolean, True),
            Arg("bias", boolean, True, _has_bias),
        ),
        _layer_norm_elements,
    ),
    _max_pool(LayerName.MAX_POOL1D, nn.MaxPool1d, 1),
    _max_pool(LayerName.MAX_POOL2D, nn.MaxPool2d, 2),
    _avg_pool(LayerName.AVG_POOL1D, nn.AvgPool1d, 1),
    _avg_pool(LayerName.AVG_POOL2D, nn.AvgPool2d, 2),
    LayerDef(LayerName.FLATTEN, nn.Flatten, (Arg("start_dim", _DIM, 1), Arg("end_dim", _DIM, -1))),
    LayerDef(
        LayerName.EMBEDDING,
        nn.Embedding,
        (
            Arg("num_embeddings", _FEATURES, 1),
            Arg("embedding_dim", _FEATURES, 1),
            Arg("padding_idx", optional(integer(-MAX_FEATURES, MAX_FEATURES)), None),
            Arg("max_norm", optional(real(0.0, 1e30, open_low=True)), None),
            Arg("norm_type", real(0.0, 1e6, open_low=True), 2.0),
            Arg("scale_grad_by_freq", boolean, False),
            Arg("sparse", false_only, False),
        ),
        lambda args: _int(args, "num_embeddings") * _int(args, "embedding_dim"),
        _embedding_relations,
    ),
)

LAYERS: Mapping[LayerName, LayerDef] = {d.name: d for d in _DEFS}
"""Every allowlisted layer by spec name."""

LAYERS_BY_CLASS: Mapping[type[nn.Module], LayerDef] = {d.cls: d for d in _DEFS}
"""The same table by exact class, to turn a built model into a spec."""
