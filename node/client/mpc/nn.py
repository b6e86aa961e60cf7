"""Encrypted models: ``node.encrypt(model, bob, alice, crypto_provider=charlie)``.

Runs in the user's process.  :func:`encrypt` captures a ``torch.nn`` model
(:mod:`node.client.mpc.model_graph`: ``torch.fx``, every layer checked
before any share is sent), secret-shares its parameters between the
parties, and returns an :class:`EncryptedModel`:

- ``enc(x)`` runs the forward on a shared input (``node.share`` or a data
  owner's ``ptr.share(...)``: that data is never reconstructed) or on a
  plaintext one, against the shared weights; the result is a
  :class:`~node.client.mpc.autograd.Variable` that ``loss.backward()``
  differentiates;
- ``enc.parameters()`` / ``enc.zero_grad()`` for
  :class:`node.client.mpc.optim.SGD`, which steps the shares;
- ``enc.decrypt()`` (``enc.get()``) reconstructs the weights into a plain
  ``nn.Module``; every share's read is subject to its node's read policy, so
  weights trained on a data owner's private data may be refused
  (``PermissionDenied``).

:func:`capture` is the same model with public weights: encrypted inference
on shared inputs with plaintext weights, and the plaintext twin of a shared
run (same graph, same approximations) that the tests compare with torch.

Batch norm runs in eval, folded into a per-channel affine map
``x * a + c`` (``a = weight / sqrt(running_var + eps)``, ``c = bias -
running_mean * a``); ``decrypt`` gives it back as weight ``a``, bias ``c``,
running mean 0 and running variance ``1 - eps``: the same function in eval.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import torch
import torch.nn as nn

from node.mpc import DEFAULT_PRECISION_BITS

from ..host import Handle
from .autograd import TensorLike, Variable
from .autograd_layers import cross_entropy, mse_loss
from .model_graph import SUPPORTED_LAYERS, ModelGraph, UnsupportedLayer, capture_graph
from .shared import SharedTensor
from .group import DEFAULT_COMPARE_WIDTH
from .sharing import share

__all__ = [
    "EncryptedModel", "SUPPORTED_LAYERS", "UnsupportedLayer", "capture", "cross_entropy", "encrypt", "mse_loss",
]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class EncryptedModel:
    """A captured model whose parameters are variables (shared after :func:`encrypt`)."""

    def __init__(self, template: nn.Module, graph: ModelGraph, params: dict[str, Variable]) -> None:
        self._template = template
        self._graph = graph
        self._params = params

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    def forward(self, *inputs: Any) -> Any:
        """Run the model on ``inputs`` (shared tensors, plain tensors or variables)."""
        return self._graph.run(self._params, inputs)

    def predict(self, *inputs: Any) -> Any:
        """The forward without a tape: no gradients, so ReLU and max-pool skip what only the backward needs.

        Returns the output's value (a shared tensor when anything was shared).
        """
        detached = {name: p.detach() for name, p in self._params.items()}
        out = self._graph.run(detached, inputs)
        return out.value if isinstance(out, Variable) else out

    # -- parameters --------------------------------------------------------------

    def named_parameters(self) -> Iterator[tuple[str, Variable]]:
        """Trainable parameters by qualified name (a folded batch norm's ``weight``/``bias`` are its a and c)."""
        return ((name, p) for name, p in self._params.items() if p.requires_grad)

    def parameters(self) -> list[Variable]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self._params.values():
            p.grad = None

    @property
    def is_shared(self) -> bool:
        return any(isinstance(p.value, SharedTensor) for p in self._params.values())

    def __repr__(self) -> str:
        kind = "shared" if self.is_shared else "public"
        return f"<EncryptedModel {type(self._template).__name__} {kind} weights, {len(self._params)} tensors>"

    # -- sharing and reconstructing ------------------------------------------------------

    def share(
        self,
        *parties: Handle,
        crypto_provider: Handle | None = None,
        precision: int = DEFAULT_PRECISION_BITS,
        truncation: str | None = None,
        compare_width: int = DEFAULT_COMPARE_WIDTH,
        comparison: str | None = None,
    ) -> EncryptedModel:
        """A copy with every parameter secret-shared between ``parties`` (options as :func:`node.share`)."""
        shared: dict[str, Variable] = {}
        for name, p in self._params.items():
            value = p.get()
            ring = share(value, *parties, crypto_provider=crypto_provider, precision=precision, truncation=truncation,
                         compare_width=compare_width, comparison=comparison)
            shared[name] = Variable(ring, requires_grad=p.requires_grad, name=name)
        return EncryptedModel(self._template, self._graph, shared)

    def decrypt(self) -> nn.Module:
        """A plain copy of the model with the current weights (shares read under the nodes' policies)."""
        values = {name: p.get() for name, p in self._params.items()}
        model = copy.deepcopy(self._template)
        with torch.no_grad():
            for name, module in self._graph.modules.items():
                if isinstance(module, _BATCHNORMS):
                    copied = model.get_submodule(name)
                    assert isinstance(copied, _BATCHNORMS)
                    _unfold_batchnorm(copied, values[f"{name}.weight"], values[f"{name}.bias"])
                    continue
                for pname, _ in module.named_parameters(recurse=False):
                    _assign(model, f"{name}.{pname}", values[f"{name}.{pname}"])
            for name in self._graph.attributes:
                _assign(model, name, values[name])
        return model

    get = decrypt


def capture(model: nn.Module) -> EncryptedModel:
    """``model`` captured to run on variables, with public weights (nothing is sent)."""
    graph = capture_graph(model)
    template = copy.deepcopy(model)
    params: dict[str, Variable] = {}
    for name, module in graph.modules.items():
        if isinstance(module, _BATCHNORMS):
            scale, shift = _fold_batchnorm(module)
            params[f"{name}.weight"] = Variable(scale, requires_grad=module.affine, name=f"{name}.weight")
            params[f"{name}.bias"] = Variable(shift, requires_grad=module.affine, name=f"{name}.bias")
            continue
        for pname, tensor in module.named_parameters(recurse=False):
            params[f"{name}.{pname}"] = Variable(tensor.detach().clone(), requires_grad=tensor.requires_grad,
                                                 name=f"{name}.{pname}")
    for name in graph.attributes:
        attribute = _attribute(model, name)
        trainable = isinstance(attribute, nn.Parameter) and attribute.requires_grad
        params[name] = Variable(attribute.detach().clone(), requires_grad=trainable, name=name)
    return EncryptedModel(template, graph, params)


def encrypt(
    model: nn.Module,
    *parties: Handle,
    crypto_provider: Handle | None = None,
    precision: int = DEFAULT_PRECISION_BITS,
    truncation: str | None = None,
    compare_width: int = DEFAULT_COMPARE_WIDTH,
    comparison: str | None = None,
) -> EncryptedModel:
    """Share ``model``'s parameters between ``parties``; every layer is checked first (UnsupportedLayer).

    ``precision``, ``truncation``, ``compare_width`` and ``comparison`` as for :func:`node.share`.
    """
    return capture(model).share(
        *parties, crypto_provider=crypto_provider, precision=precision, truncation=truncation,
        compare_width=compare_width, comparison=comparison,
    )


BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d


def _fold_batchnorm(module: BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    mean, var = module.running_mean, module.running_var
    assert isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor)
    eps = float(module.eps)
    weight = module.weight.detach() if module.weight is not None else torch.ones_like(mean)
    bias = module.bias.detach() if module.bias is not None else torch.zeros_like(mean)
    scale = weight / torch.sqrt(var + eps)
    return scale.clone(), (bias - mean * scale).clone()


def _unfold_batchnorm(module: BatchNorm, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Weight ``a``, bias ``c``, running mean 0 and variance ``1 - eps``: ``x * a + c`` in eval."""
    if module.weight is None:  # not affine: its folded map was never trained
        return
    module.weight.copy_(scale)
    module.bias.copy_(shift)
    assert isinstance(module.running_mean, torch.Tensor) and isinstance(module.running_var, torch.Tensor)
    module.running_mean.zero_()
    module.running_var.fill_(1.0 - float(module.eps))


def _attribute(model: nn.Module, name: str) -> torch.Tensor:
    owner, _, attr = name.rpartition(".")
    value = getattr(model.get_submodule(owner) if owner else model, attr)
    if not isinstance(value, torch.Tensor):
        raise UnsupportedLayer(f"attribute {name!r} used by the forward is not a tensor", {"layer": name})
    return value


def _assign(model: nn.Module, name: str, value: TensorLike) -> None:
    target = _attribute(model, name)
    assert isinstance(value, torch.Tensor)
    target.copy_(value.to(target.dtype))
