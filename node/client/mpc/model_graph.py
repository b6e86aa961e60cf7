"""A ``torch.nn`` model captured with ``torch.fx`` and run on :class:`~node.client.mpc.autograd.Variable`.

Runs in the user's process.  :func:`capture_graph` traces the model
(``symbolic_trace``: ``nn.Sequential`` nests, and a module whose
``forward`` calls ``F.relu``, ``torch.flatten``, ``F.max_pool2d``... works
the same) and checks every node against explicit tables of the layers,
functions and methods shared tensors support, *before* anything is shared:
anything else raises :class:`UnsupportedLayer` naming the layer's path and
class.  :meth:`ModelGraph.run` then interprets the graph with the model's
parameters as variables, so the tape records exactly the traced ops.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import autograd_layers as L
from .autograd import Variable, as_variable
from .group import SharingError

__all__ = ["ModelGraph", "UnsupportedLayer", "capture_graph", "SUPPORTED_LAYERS"]

Params = Mapping[str, Variable]


class UnsupportedLayer(SharingError):
    """The model has a layer, function or setting shared tensors do not support (named in the message)."""


def _linear(m: nn.Linear, name: str, p: Params, x: Variable) -> Variable:
    return L.linear(x, p[f"{name}.weight"], p.get(f"{name}.bias"))


def _conv(m: nn.Conv2d, name: str, p: Params, x: Variable) -> Variable:
    padding = 0 if isinstance(m.padding, str) else m.padding  # "valid": the only string capture_graph lets by
    return L.conv2d(x, p[f"{name}.weight"], p.get(f"{name}.bias"), m.stride, padding, m.dilation, m.groups)


def _batchnorm(m: nn.Module, name: str, p: Params, x: Variable) -> Variable:
    return L.affine(x, p[f"{name}.weight"], p[f"{name}.bias"], channel_dim=1)


LayerRun = Callable[[Any, str, Params, Variable], Variable]

_LAYERS: Mapping[type[nn.Module], LayerRun] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv,
    nn.ReLU: lambda m, name, p, x: L.relu(x),
    nn.MaxPool2d: lambda m, name, p, x: L.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation),
    nn.AvgPool2d: lambda m, name, p, x: L.avg_pool2d(x, m.kernel_size, m.stride, m.padding),
    nn.Flatten: lambda m, name, p, x: x.flatten(m.start_dim, m.end_dim),
    nn.Sigmoid: lambda m, name, p, x: L.sigmoid(x),
    nn.Softmax: lambda m, name, p, x: L.softmax(x, m.dim),
    nn.LogSoftmax: lambda m, name, p, x: L.log_softmax(x, m.dim),
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.Identity: lambda m, name, p, x: x,
    nn.Dropout: lambda m, name, p, x: x,  # in eval only (checked at capture): the identity
}

SUPPORTED_LAYERS = tuple(cls.__name__ for cls in _LAYERS)


def _layer_problem(module: nn.Module) -> str | None:
    """Why a module of a supported class still cannot run on shares (a setting), or None."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r} (only 'zeros')"
        if isinstance(module.padding, str) and module.padding != "valid":
            return f"padding={module.padding!r} (give the padding as numbers)"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        if module.ceil_mode:
            return "ceil_mode=True"
        if module.padding not in (0, (0, 0)):
            return f"padding={module.padding!r} (pooling takes padding 0)"
    if isinstance(module, nn.MaxPool2d) and module.return_indices:
        return "return_indices=True"
    if isinstance(module, nn.AvgPool2d) and module.divisor_override is not None:
        return "divisor_override"
    if isinstance(module, nn.Dropout) and module.training:
        return "training mode (dropout runs in eval only, as the identity: call model.eval() first)"
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)) and module.dim is None:
        return "dim=None (give the dim)"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not module.track_running_stats:
        return "track_running_stats=False (batch norm runs in eval, with running statistics)"
    return None


def _dim(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int = 1) -> int:
    dim = kwargs.get("dim", args[position] if len(args) > position else None)
    if not isinstance(dim, int):
        raise UnsupportedLayer("softmax/log_softmax on shared tensors needs an int dim", {})
    return dim


def _pool(kind: str) -> Callable[..., Variable]:
    def run(x: Variable, kernel_size: Any, stride: Any = None, padding: Any = 0, *rest: Any, **kwargs: Any) -> Variable:
        options = dict(zip(("dilation", "ceil_mode", "return_indices") if kind == "max" else
                           ("ceil_mode", "count_include_pad", "divisor_override"), rest), **kwargs)
        stride = options.pop("stride", stride)
        padding = options.pop("padding", padding)
        if options.get("ceil_mode") or options.get("return_indices") or options.get("divisor_override") is not None:
            raise UnsupportedLayer(f"{kind}_pool2d with ceil_mode, return_indices or divisor_override", {})
        if kind == "max":
            return L.max_pool2d(x, kernel_size, stride, padding, options.get("dilation", 1))
        return L.avg_pool2d(x, kernel_size, stride, padding)

    return run


def _flatten(x: Variable, start_dim: int = 0, end_dim: int = -1) -> Variable:
    return x.flatten(start_dim, end_dim)


def _relu(x: Variable, inplace: bool = False) -> Variable:
    return L.relu(x)


def _dropout(x: Variable, p: float = 0.5, training: bool = True, inplace: bool = False) -> Variable:
    return x  # capture_graph refused any call with training=True


def _dropout_training(node: fx.Node) -> bool:
    training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
    return bool(training)


def _linear_fn(x: Variable, weight: Variable, bias: Variable | None = None) -> Variable:
    return L.linear(x, weight, bias)


_FUNCTIONS: Mapping[Any, Callable[..., Any]] = {
    operator.add: operator.add, torch.add: operator.add,
    operator.sub: operator.sub, torch.sub: operator.sub,
    operator.mul: operator.mul, torch.mul: operator.mul,
    operator.neg: operator.neg, operator.truediv: operator.truediv,
    operator.matmul: operator.matmul, torch.matmul: operator.matmul,
    operator.getitem: operator.getitem, getattr: getattr,
    F.relu: _relu, torch.relu: _relu,
    torch.flatten: _flatten,
    F.max_pool2d: _pool("max"), F.avg_pool2d: _pool("avg"),
    torch.sigmoid: L.sigmoid, F.sigmoid: L.sigmoid,
    F.softmax: lambda x, *a, **k: L.softmax(x, _dim(a, k, 0)),
    torch.softmax: lambda x, *a, **k: L.softmax(x, _dim(a, k, 0)),
    F.log_softmax: lambda x, *a, **k: L.log_softmax(x, _dim(a, k, 0)),
    torch.log_softmax: lambda x, *a, **k: L.log_softmax(x, _dim(a, k, 0)),
    F.linear: _linear_fn, F.dropout: _dropout,
    F.conv2d: L.conv2d, torch.conv2d: L.conv2d,
}

_METHODS: Mapping[str, Callable[..., Any]] = {
    "relu": _relu, "flatten": _flatten, "sigmoid": L.sigmoid,
    "view": Variable.reshape, "reshape": Variable.reshape, "size": Variable.size, "dim": Variable.dim,
    "t": Variable.t, "transpose": Variable.transpose, "sum": Variable.sum, "mean": Variable.mean,
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "matmul": operator.matmul, "neg": operator.neg,
    "softmax": lambda x, *a, **k: L.softmax(x, _dim(a, k, 0)),
    "log_softmax": lambda x, *a, **k: L.log_softmax(x, _dim(a, k, 0)),
}


@dataclass(frozen=True)
class ModelGraph:
    """A traced model whose every node runs on variables."""

    graph: fx.Graph
    modules: Mapping[str, nn.Module]
    """Leaf modules called by the graph, by qualified name."""
    attributes: tuple[str, ...]
    """Parameters and buffers the forward reads directly (``self.w``), by qualified name."""

    def run(self, params: Params, inputs: tuple[Any, ...]) -> Any:
        """Interpret the graph on ``inputs`` with ``params`` (qualified name -> variable)."""
        env: dict[fx.Node, Any] = {}
        feed = iter(inputs)
        for node in self.graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "placeholder":
                value = next(feed, None)
                env[node] = as_variable(value) if value is not None else node.args[0] if node.args else None
            elif node.op == "get_attr":
                env[node] = params[str(node.target)]
            elif node.op == "call_module":
                name = str(node.target)
                module = self.modules[name]
                env[node] = _LAYERS[type(module)](module, name, params, as_variable(args[0]))
            elif node.op == "call_function":
                env[node] = _FUNCTIONS[node.target](*args, **kwargs)
            elif node.op == "call_method":
                env[node] = _METHODS[str(node.target)](*args, **kwargs)
            elif node.op == "output":
                return args[0]
        raise UnsupportedLayer("the traced model has no output", {})


def capture_graph(model: nn.Module) -> ModelGraph:
    """Trace ``model`` and check every node is supported (UnsupportedLayer otherwise); nothing is sent."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"encrypt() takes a torch.nn.Module, not {type(model).__name__}")
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises TraceError, TypeError, NotImplementedError... by model
        raise UnsupportedLayer(
            f"{type(model).__name__} cannot be captured with torch.fx ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); its forward must not branch on values",
            {"model": type(model).__name__},
        ) from None
    modules: dict[str, nn.Module] = {}
    attributes: list[str] = []
    supported = ", ".join(SUPPORTED_LAYERS)
    for node in traced.graph.nodes:
        if node.op == "call_module":
            name = str(node.target)
            module = model.get_submodule(name)
            if type(module) not in _LAYERS:
                raise UnsupportedLayer(
                    f"layer {name!r} ({type(module).__name__}) is not supported on shared tensors; "
                    f"supported: {supported}",
                    {"layer": name, "class": type(module).__name__},
                )
            problem = _layer_problem(module)
            if problem is not None:
                raise UnsupportedLayer(
                    f"layer {name!r} ({type(module).__name__}) with {problem} is not supported on shared tensors",
                    {"layer": name, "class": type(module).__name__},
                )
            modules[name] = module
        elif node.op == "call_function" and node.target is F.dropout and _dropout_training(node):
            raise UnsupportedLayer(
                f"operation {node.name!r} (dropout) in training mode is not supported on shared tensors "
                "(it runs in eval only, as the identity: call model.eval() first)",
                {"layer": node.name, "class": "dropout"},
            )
        elif node.op == "call_function" and node.target not in _FUNCTIONS:
            what = getattr(node.target, "__qualname__", repr(node.target))
            raise UnsupportedLayer(
                f"operation {node.name!r} ({what}) is not supported on shared tensors",
                {"layer": node.name, "class": what},
            )
        elif node.op == "call_method" and node.target not in _METHODS:
            raise UnsupportedLayer(
                f"operation {node.name!r} (Tensor.{node.target}) is not supported on shared tensors",
                {"layer": node.name, "class": f"Tensor.{node.target}"},
            )
        elif node.op == "get_attr":
            attributes.append(str(node.target))
    return ModelGraph(traced.graph, modules, tuple(attributes))
