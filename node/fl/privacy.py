"""DP-SGD on a data owner: per-sample clipping and Gaussian noise, run by the owner.

Owns :class:`DpSgd` (the owner's setting), :func:`dp_schedule` (the
sampling rate and step count a request takes) and :func:`train_privately`,
the private counterpart of :func:`node.fl.local.train_locally`.  The privacy
budget lives in :mod:`node.fl.ledger`, the secret randomness in
:mod:`node.fl.noise`, the layer rules in :mod:`node.fl.private_model`.

One step (Abadi et al., "Deep Learning with Differential Privacy", 2016,
algorithm 1, with Poisson sampling as the accountant assumes):

1. Sample: every training row joins the step's batch independently with
   probability q (:func:`dp_schedule`), drawn from the secret
   :class:`~node.fl.noise.NoiseSource`, so neither the batch nor its size
   is known to the trainer.  An empty batch still takes a (noise-only) step.
   A row the model cannot take (an Embedding index or class label out of
   its range, :func:`~node.fl.private_model.usable_rows`) is left out
   rather than failing the training, which would reveal that one exists.
2. Per-sample gradients of each row's own loss, with Opacus'
   ``GradSampleModule`` (its layer hooks; its functorch mode for the few
   layer settings the hooks get wrong), in chunks of at most
   :data:`MAX_GRAD_SAMPLE_ELEMENTS` so a big batch of a big model cannot
   exhaust memory.
3. Clip each row's whole gradient (all parameters together) to L2 norm C;
   a row whose gradient is not finite counts as zero (a NaN or infinity
   in the sum would reveal that some sampled row overflowed).
4. Sum, add N(0, (sigma*C)^2) to every coordinate (in float64), and divide
   by the expected batch size q*N.
5. Hand that gradient to the optimiser the trainer asked for (our SGD or
   Adam, :mod:`node.fl.optimizers`): anything after step 4 is
   post-processing and costs no privacy.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Mapping, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .datasets import Dataset
from .errors import IncompatibleData, PrivacyConfigError
from .hyperparameters import Hyperparameters, LossName, make_optimizer
from .local import evaluate, prepare_data, seed_dropout
from .noise import NoiseSource
from .private_model import check_private_model, disable_inplace, hooks_are_exact, padding_rows, usable_rows
from .results import LocalResult
from .spec import ModelSpec, build_model

if TYPE_CHECKING:
    from opacus.grad_sample import GradSampleModule

__all__ = ["DpSgd", "dp_schedule", "train_privately", "check_delta", "MAX_GRAD_SAMPLE_ELEMENTS"]

MAX_GRAD_SAMPLE_ELEMENTS = 1 << 24
"""Most per-sample gradient elements held at once (64 MiB of float32); bigger batches go in chunks."""

_CLIP_EPSILON = 1e-6
"""Added to a row's gradient norm before dividing (Opacus' value): a clipped norm stays below C."""


def check_delta(delta: float) -> float:
    """``delta`` if it is a number in (0, 1), else :class:`PrivacyConfigError`."""
    if type(delta) not in (int, float) or not 0 < delta < 1:
        raise PrivacyConfigError.for_field("delta", delta, "must be in (0, 1)")
    return float(delta)


def _positive(field: str, value: float) -> None:
    if type(value) not in (int, float) or not (math.isfinite(value) and value > 0):
        raise PrivacyConfigError.for_field(field, value, "must be a finite number > 0")


@dataclass(frozen=True, slots=True)
class DpSgd:
    """The owner's DP-SGD setting; checked on construction (:class:`PrivacyConfigError`)."""

    noise_multiplier: float
    """sigma > 0: the noise's standard deviation in units of ``max_grad_norm``."""
    max_grad_norm: float
    """C > 0: each row's gradient is clipped to this L2 norm."""
    delta: float
    """0 < delta < 1: the delta of the (epsilon, delta) guarantee the ledger reports."""

    def __post_init__(self) -> None:
        _positive("noise_multiplier", self.noise_multiplier)
        _positive("max_grad_norm", self.max_grad_norm)
        check_delta(self.delta)
        for name in ("noise_multiplier", "max_grad_norm", "delta"):
            object.__setattr__(self, name, float(getattr(self, name)))


def dp_schedule(hyper: Hyperparameters, samples: int) -> Tuple[float, int]:
    """``(sample_rate, steps)`` one train request with ``hyper`` takes on ``samples`` training rows.

    Opacus' convention: an epoch is ``k = ceil(samples / batch_size)`` steps
    at sample rate ``1 / k`` (so the expected batch is about ``batch_size``
    and each row is seen once per epoch on average); a batch size of at
    least ``samples`` is full-batch, rate 1.
    """
    if type(samples) is not int or samples < 1:
        raise ValueError(f"private training needs at least one training row, got {samples!r}")
    per_epoch = -(-samples // hyper.batch_size)
    return 1.0 / per_epoch, per_epoch * hyper.local_epochs


def train_privately(spec: ModelSpec, state: Mapping[str, torch.Tensor], dataset: Dataset,
                    hyper: Hyperparameters, dp: DpSgd, *, seed: Optional[int] = None,
                    metrics: bool = False) -> LocalResult:
    """Train like :func:`~node.fl.local.train_locally`, but with DP-SGD (see the module docstring).

    Takes the steps :func:`dp_schedule` gives; charging them to a
    :class:`~node.fl.ledger.PrivacyLedger` first is the caller's job.
    Batches and noise come from a :class:`~node.fl.noise.NoiseSource` keyed
    from the OS CSPRNG (not ``torch.Generator``, predictable from its output,
    and not Opacus' ``secure_mode``, which needs the unmaintained
    ``torchcsprng``); ``seed`` fixes that key for tests only and must never
    come from a peer, who could then subtract the noise.  ``hyper.seed``
    still drives dropout masks, which do not depend on the data.

    Only the returned ``state`` is covered by the (epsilon, delta)
    guarantee.  The training loss and the held-out metrics are exact
    functions of the owner's rows, so unless ``metrics`` is true they are
    withheld: ``train_loss`` is 0.0 and ``heldout`` is ``None``.

    Raises the errors of :func:`~node.fl.spec.build_model`,
    :class:`~node.fl.errors.DpUnsupportedLayer` for a layer DP-SGD cannot
    train (BatchNorm, anything that mixes the rows of a batch), and
    :class:`~node.fl.errors.IncompatibleData` if the model does not fit.
    """
    model = build_model(spec, state)
    check_private_model(model, dataset.features.dim())
    disable_inplace(model)
    generator = torch.Generator().manual_seed(hyper.seed)
    seed_dropout(model, generator)
    name = dataset.info.name
    usable = usable_rows(model, dataset.features, dataset.labels, hyper.loss)
    inputs, targets = prepare_data(model, *_blank(dataset.features, dataset.labels, usable), hyper.loss, name)
    source = NoiseSource() if seed is None else NoiseSource.for_test(seed)
    try:
        train_loss = _fit_privately(model, inputs, targets, usable, hyper, dp, source)
    except RuntimeError as exc:
        raise IncompatibleData.for_dataset(name, f"training failed: {str(exc).splitlines()[0][:200]}") from None
    if not metrics:
        return LocalResult(dict(model.state_dict()), dataset.train_samples, 0.0, None)
    held = usable_rows(model, dataset.heldout_features, dataset.heldout_labels, hyper.loss)
    heldout = None
    if bool(held.any()):
        held_inputs, held_targets = prepare_data(
            model, dataset.heldout_features[held], dataset.heldout_labels[held], hyper.loss, name
        )
        heldout = evaluate(model, held_inputs, held_targets, hyper.loss)
    return LocalResult(dict(model.state_dict()), dataset.train_samples, train_loss, heldout)


def _blank(features: torch.Tensor, labels: torch.Tensor, usable: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows the model cannot take, zeroed so the whole-dataset checks pass; they are never sampled."""
    if bool(usable.all()):
        return features, labels

    def blank(values: torch.Tensor) -> torch.Tensor:
        keep = usable.view(-1, *[1] * (values.dim() - 1))
        return torch.where(keep, values, torch.zeros_like(values))
    return blank(features), blank(labels)


def _per_row(loss: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def per_row(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss(output, targets, reduction="none").reshape(output.shape[0], -1).mean(1)

    return per_row


_PER_ROW_LOSSES: Mapping[LossName, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    LossName.CROSS_ENTROPY: _per_row(F.cross_entropy),
    LossName.BCE_WITH_LOGITS: _per_row(F.binary_cross_entropy_with_logits),
    LossName.MSE: _per_row(F.mse_loss),
}
"""Each row's own loss; their mean over a batch is the plain path's mean-reduced loss."""


def _fit_privately(model: nn.Sequential, inputs: torch.Tensor, targets: torch.Tensor, usable: torch.Tensor,
                   hyper: Hyperparameters, dp: DpSgd, source: NoiseSource) -> float:
    """The DP-SGD loop; returns the mean loss over every sampled row (0.0 if none was).

    Every row is sampled at the same rate; a sampled row that is not
    ``usable`` then contributes nothing (as if its clipped gradient were 0).
    """
    from opacus.grad_sample import GradSampleModule

    samples = int(inputs.shape[0])
    rate, steps = dp_schedule(hyper, samples)
    expected = rate * samples
    named = [(key, p) for key, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    padding = padding_rows(model)
    pads = [padding.get(key) for key, _ in named]
    optimizer = make_optimizer(params, hyper)
    wrapped = GradSampleModule(model, loss_reduction="sum", strict=True, force_functorch=not hooks_are_exact(model))
    elements = max(1, sum(p.numel() for p in params))
    chunk = max(1, MAX_GRAD_SAMPLE_ELEMENTS // elements)
    total, seen = 0.0, 0
    wrapped.train()
    try:
        for _ in range(steps):
            rows = torch.nonzero(source.bernoulli(samples, rate) & usable).flatten()
            sums = [torch.zeros_like(p) for p in params]
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                total += _add_clipped(wrapped, params, pads, inputs[part], targets[part], hyper.loss,
                                      dp.max_grad_norm, sums)
            seen += len(rows)
            noise = source.gaussian(elements, dp.noise_multiplier * dp.max_grad_norm)
            offset = 0
            for param, pad, summed in zip(params, pads, sums):
                count = param.numel()
                piece = noise[offset : offset + count].view_as(summed)
                offset += count
                param.grad = (summed.to(torch.float64) + piece).div_(expected).to(param.dtype)
                if pad is not None:
                    param.grad[pad] = 0.0  # torch never moves a padding row
            optimizer.step()
    finally:
        wrapped.remove_hooks()
    return total / seen if seen else 0.0


def _add_clipped(wrapped: GradSampleModule, params: List[nn.Parameter], pads: List[Optional[int]],
                 inputs: torch.Tensor, targets: torch.Tensor, loss: LossName, clip: float,
                 sums: List[torch.Tensor]) -> float:
    """Add the rows' clipped gradients to ``sums``; return their summed loss."""
    wrapped.zero_grad(set_to_none=True)
    batch = int(inputs.shape[0])
    output = wrapped(inputs)
    if output.shape[0] != batch:
        raise RuntimeError("the model's output does not keep one row per input row")
    losses = _PER_ROW_LOSSES[loss](output, targets)
    losses.sum().backward()  # type: ignore[no-untyped-call]
    losses = losses.detach()
    grads: List[torch.Tensor] = []
    for param, pad in zip(params, pads):
        grad = getattr(param, "grad_sample", None)
        grad = torch.zeros(batch, *param.shape, dtype=param.dtype) if grad is None else grad
        if pad is not None:
            grad[:, pad] = 0.0  # Opacus' Embedding hook ignores padding_idx
        grads.append(grad)
    norms = torch.stack([g.reshape(batch, -1).norm(dim=1) for g in grads], dim=1).norm(dim=1)
    factors = (clip / (norms + _CLIP_EPSILON)).clamp(max=1.0)
    finite = torch.isfinite(norms)
    if not bool(finite.all()):
        # A row whose gradient overflows counts for nothing: a NaN in the sum
        # would tell the trainer that some sampled row crossed a threshold.
        factors = torch.where(finite, factors, torch.zeros_like(factors))
        grads = [torch.where(finite.view(-1, *[1] * (g.dim() - 1)), g, torch.zeros_like(g)) for g in grads]
    for summed, grad in zip(sums, grads):
        summed.add_(torch.einsum("i,i...->...", factors, grad))
    wrapped.zero_grad(set_to_none=True)
    return float(losses[finite].sum())
