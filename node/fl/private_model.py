"""Which models DP-SGD may train: every layer must keep the rows of a batch apart.

Owns :func:`check_private_model` (the rules, as a table by exact layer
class), :func:`usable_rows`, and :func:`hooks_are_exact`,
:func:`padding_rows` and :func:`disable_inplace` (where Opacus' per-layer
hooks need help).

Why the rules: DP-SGD bounds one row's influence on an update by clipping
that row's gradient.  That is the row's whole influence only if the model
computes each row's output from that row alone.  A layer that mixes rows
lets one row move every other row's gradient, and clipping then bounds
nothing: BatchNorm (batch statistics, and running statistics of the data
kept in its buffers, which no noise covers), a Softmax, LogSoftmax or
Flatten over dimension 0, a LayerNorm whose shape spans the batch, a
convolution fed a tensor torch reads as unbatched (the rows become
channels), a Linear on a 1-d batch.  Embedding's ``max_norm`` rewrites the
looked-up weight rows during the forward pass (a data-dependent change
outside the noisy step) and ``scale_grad_by_freq`` scales each row's
gradient by counts over the batch; both are refused.

Rows the model cannot take: which rows fit the trainer's model can depend
on their values (an Embedding index or a class label beyond what the model
has).  Failing the whole training on one such row would tell the trainer
that one exists, a bit no noise covers; :func:`usable_rows` finds them so
DP-SGD can leave them out (a row's exclusion depends on that row alone,
so its influence stays within the clipping bound).

Only the number of dimensions decides whether dimension 0 stays the batch,
so the check follows it through the layers (Flatten and Embedding change
it, every other allowlisted layer keeps it) without running the model.
A layer class missing from the table is refused.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from .errors import DpUnsupportedLayer, SpecError
from .hyperparameters import LossName

__all__ = ["check_private_model", "usable_rows", "hooks_are_exact", "padding_rows", "disable_inplace"]

Rule = Callable[[nn.Module, int], Tuple[Optional[str], int]]
"""(layer, input dimensions) -> (reason to refuse or None, output dimensions)."""


def _rowwise(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
    return None, dims


def _at_least(least: int, what: str) -> Rule:
    def rule(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
        if dims < least:
            return f"on a {dims}-d input {what} would mix the rows of the batch", dims
        return None, dims

    return rule


def _exactly(count: int) -> Rule:
    def rule(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
        if dims != count:
            return (f"it needs a batched {count}-d input, got {dims}-d (torch would read the "
                    "batch as channels and mix its rows)"), dims
        return None, dims

    return rule


def _batch_norm(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
    return ("BatchNorm normalises with statistics of the whole batch and keeps running "
            "statistics of the data; use LayerNorm"), dims


def _layer_norm(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
    assert isinstance(module, nn.LayerNorm)
    if len(module.normalized_shape) >= dims:
        return f"normalized_shape {list(module.normalized_shape)} spans the batch dimension", dims
    return None, dims


def _softmax(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
    assert isinstance(module, (nn.Softmax, nn.LogSoftmax))
    # torch's implicit dim for dim=None (torch.nn.functional._get_softmax_dim).
    dim = module.dim if module.dim is not None else (0 if dims in (0, 1, 3) else 1)
    if dims == 0 or dim % dims == 0:
        return f"it normalises over dimension 0 of a {dims}-d input, the batch", dims
    return None, dims


def _flatten(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
    assert isinstance(module, nn.Flatten)
    start, end = module.start_dim % max(dims, 1), module.end_dim % max(dims, 1)
    if start == 0 and end > 0:
        return "it flattens the batch dimension into the features", dims
    return None, dims - max(0, end - start)


def _embedding(module: nn.Module, dims: int) -> Tuple[Optional[str], int]:
    assert isinstance(module, nn.Embedding)
    if module.max_norm is not None:
        return "max_norm rewrites the looked-up weight rows during the forward pass", dims + 1
    if module.scale_grad_by_freq:
        return "scale_grad_by_freq scales each row's gradient by counts over the batch", dims + 1
    return None, dims + 1


_RULES: Mapping[type[nn.Module], Rule] = {
    nn.Linear: _at_least(2, "a Linear"),
    nn.Conv1d: _exactly(3),
    nn.Conv2d: _exactly(4),
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.LayerNorm: _layer_norm,
    nn.Softmax: _softmax,
    nn.LogSoftmax: _softmax,
    nn.Flatten: _flatten,
    nn.Embedding: _embedding,
    nn.MaxPool1d: _at_least(2, "a pooling layer"),
    nn.AvgPool1d: _at_least(2, "a pooling layer"),
    nn.MaxPool2d: _at_least(3, "a pooling layer"),
    nn.AvgPool2d: _at_least(3, "a pooling layer"),
    nn.ReLU: _rowwise,
    nn.LeakyReLU: _rowwise,
    nn.Sigmoid: _rowwise,
    nn.Tanh: _rowwise,
    nn.GELU: _rowwise,
    nn.SiLU: _rowwise,
    nn.ELU: _rowwise,
    nn.Identity: _rowwise,
    nn.Dropout: _rowwise,
}


def check_private_model(model: nn.Module, input_dims: int) -> None:
    """Refuse a model DP-SGD cannot train on inputs of ``input_dims`` dimensions (batch first).

    Raises :class:`DpUnsupportedLayer` naming the first offending layer's
    index and class, :class:`SpecError` for anything but an ``nn.Sequential``.
    """
    if type(model) is not nn.Sequential:
        raise SpecError.for_spec(f"private training needs an nn.Sequential, got {type(model).__name__}")
    dims = input_dims
    for index, module in enumerate(model):
        rule = _RULES.get(type(module))
        if rule is None:
            raise DpUnsupportedLayer.for_dp(index, type(module).__name__, "no row-separation rule for this layer")
        reason, dims = rule(module, dims)
        if reason is not None:
            raise DpUnsupportedLayer.for_dp(index, type(module).__name__, reason)


def hooks_are_exact(model: nn.Module) -> bool:
    """Whether Opacus' per-layer hooks give exact per-sample gradients for every layer.

    They do not for a convolution with a padding mode other than zeros (the
    hook pads with zeros) nor for a LayerNorm with a weight but no bias (the
    hook fails); those models take Opacus' functorch mode, which is exact but
    imports ``torch._dynamo`` (about 1 s, once per process).
    """
    for module in model.modules():
        if type(module) in (nn.Conv1d, nn.Conv2d) and getattr(module, "padding_mode", "zeros") != "zeros":
            return False
        if type(module) is nn.LayerNorm and module.weight is not None and module.bias is None:
            return False
    return True


def padding_rows(model: nn.Module) -> Dict[str, int]:
    """``{parameter name: row}`` of every Embedding ``padding_idx`` (a row torch never updates)."""
    return {
        f"{name}.weight" if name else "weight": module.padding_idx
        for name, module in model.named_modules()
        if type(module) is nn.Embedding and module.padding_idx is not None
    }


def disable_inplace(model: nn.Module) -> None:
    """Make in-place activations (``ReLU(inplace=True)``...) compute out of place; same values.

    Opacus' backward hooks hand the next layer a view that an in-place
    activation may not modify (autograd refuses it).
    """
    for module in model.modules():
        if type(module) in _RULES and getattr(module, "inplace", False) is True:
            setattr(module, "inplace", False)


def usable_rows(model: nn.Sequential, features: torch.Tensor, labels: torch.Tensor, loss: LossName) -> torch.Tensor:
    """A bool mask of the rows whose values the model can take.

    Refused rows: for an Embedding first layer, any feature that is not an
    integer index below its ``num_embeddings``; for cross-entropy, a label
    that is not an integer class of the model's output (its class count
    comes from a forward pass on a zero row, which reads no data).
    """
    valid = torch.ones(features.shape[0], dtype=torch.bool)
    first = model[0] if len(model) else None
    if type(first) is nn.Embedding:
        flat = features.reshape(features.shape[0], -1)
        valid &= ((flat == flat.round()) & (flat >= 0) & (flat < first.num_embeddings)).all(1)
    if loss is LossName.CROSS_ENTROPY and labels.dim() == 1:
        classes = _classes(model, features)
        if classes is not None:
            valid &= (labels == labels.round()) & (labels >= 0) & (labels < classes)
    return valid


def _classes(model: nn.Sequential, features: torch.Tensor) -> int | None:
    dtype = torch.int64 if len(model) and type(model[0]) is nn.Embedding else features.dtype
    probe = torch.zeros((1, *features.shape[1:]), dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(probe)
    except (RuntimeError, ValueError, IndexError):
        return None  # a shape error: prepare_data reports it, whatever the rows hold
    finally:
        model.train(was_training)
    return int(output.shape[1]) if output.dim() == 2 else None
