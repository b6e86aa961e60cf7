"""Local training on a data owner: spec + state + dataset + hyperparameters -> update.

Owns :func:`train_locally`, :func:`evaluate` / :func:`evaluate_heldout`,
:func:`prepare_data` (the model/data compatibility check) and
:func:`seed_dropout`.  The loop is a plain PyTorch loop with nothing per
batch beyond one: the permutation is drawn once per epoch from a private
``torch.Generator`` seeded with ``hyper.seed``, the epoch's rows are
gathered once, and minibatches are contiguous slices.  A last minibatch of a
single sample is merged into the one before it (BatchNorm cannot train on
one sample).  Dropout layers are swapped for :class:`GeneratorDropout`,
which draws its masks from the same private generator, so training is
reproducible without touching torch's global generator.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Tuple

import torch
from torch import nn

from .datasets import Dataset
from .errors import IncompatibleData
from .hyperparameters import Hyperparameters, LossName, loss_function, make_optimizer
from .results import LocalResult, Metrics
from .spec import ModelSpec, build_model

__all__ = [
    "GeneratorDropout",
    "seed_dropout",
    "batch_bounds",
    "prepare_data",
    "train_locally",
    "evaluate",
    "evaluate_heldout",
    "EVAL_CHUNK",
]

EVAL_CHUNK = 8192
"""Rows per forward pass when evaluating (bounds activation memory)."""


class GeneratorDropout(nn.Module):
    """``nn.Dropout`` drawing its mask from a given generator instead of the global one."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep.div_(1.0 - self.p)


def seed_dropout(model: nn.Sequential, generator: torch.Generator) -> None:
    """Replace every ``nn.Dropout`` of ``model`` by a :class:`GeneratorDropout` (same ``p``)."""
    for index, module in enumerate(model):
        if type(module) is nn.Dropout:
            model[index] = GeneratorDropout(float(module.p), generator)


def batch_bounds(samples: int, batch_size: int, min_batch: int = 2) -> List[Tuple[int, int]]:
    """Minibatch ``(start, stop)`` pairs; a trailing batch under ``min_batch`` samples joins the one before.

    ``min_batch`` is at least 2 (BatchNorm cannot train on one sample); a
    data owner's policy may raise it, so that no step sees fewer rows.
    """
    starts = list(range(0, samples, batch_size))
    if len(starts) > 1 and samples - starts[-1] < max(2, min_batch):
        starts.pop()
    return list(zip(starts, starts[1:] + [samples]))


def _inputs(model: nn.Sequential, features: torch.Tensor, name: str) -> torch.Tensor:
    if len(model) and type(model[0]) is nn.Embedding:
        if not bool((features == features.round()).all()):
            raise IncompatibleData.for_dataset(name, "an Embedding first layer needs integer features")
        return features.to(torch.int64)
    return features


def _targets(output: torch.Tensor, labels: torch.Tensor, loss: LossName, name: str) -> torch.Tensor:
    if loss is LossName.CROSS_ENTROPY:
        if output.dim() != 2 or labels.dim() != 1:
            raise IncompatibleData.for_dataset(
                name, f"cross_entropy needs outputs (batch, classes) and 1-d labels, got outputs "
                f"{tuple(output.shape)} for labels {tuple(labels.shape[1:])} per sample"
            )
        if labels.is_floating_point() and not bool((labels == labels.round()).all()):
            raise IncompatibleData.for_dataset(name, "cross_entropy needs integer class labels")
        targets = labels.to(torch.int64)
        if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= output.shape[1]):
            raise IncompatibleData.for_dataset(
                name, f"labels range over [{int(targets.min())}, {int(targets.max())}], "
                f"the model has {output.shape[1]} classes"
            )
        return targets
    per_sample = output[0].numel()
    if labels[0].numel() != per_sample:
        raise IncompatibleData.for_dataset(
            name, f"{loss.value} needs {per_sample} label values per sample (the model's output "
            f"{tuple(output.shape[1:])}), the dataset has {labels[0].numel()}"
        )
    return labels.to(output.dtype).reshape(labels.shape[0], *output.shape[1:])


def prepare_data(
    model: nn.Sequential, features: torch.Tensor, labels: torch.Tensor, loss: LossName, name: str
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Inputs and loss-ready targets, after a dry forward pass on one sample.

    Raises :class:`IncompatibleData` if the model cannot take the features or
    its output does not fit the labels under ``loss``.
    """
    inputs = _inputs(model, features, name)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(inputs[:1])
    except (RuntimeError, ValueError, IndexError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise IncompatibleData.for_dataset(
            name, f"the model cannot take samples of shape {tuple(features.shape[1:])}: {reason}"
        ) from None
    finally:
        model.train(was_training)
    return inputs, _targets(output, labels, loss, name)


def _fit(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, hyper: Hyperparameters,
         generator: torch.Generator, min_batch: int) -> float:
    """The plain loop; returns the sample-weighted mean minibatch loss."""
    loss_fn = loss_function(hyper.loss)
    optimizer = make_optimizer(model.parameters(), hyper)
    bounds = batch_bounds(inputs.shape[0], hyper.batch_size, min_batch)
    total = 0.0
    model.train()
    for _ in range(hyper.local_epochs):
        order = torch.randperm(inputs.shape[0], generator=generator)
        epoch_inputs, epoch_targets = inputs[order], targets[order]
        for start, stop in bounds:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(epoch_inputs[start:stop]), epoch_targets[start:stop])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.item() * (stop - start)
    return total / (inputs.shape[0] * hyper.local_epochs)


def train_locally(spec: ModelSpec, state: Mapping[str, torch.Tensor], dataset: Dataset,
                  hyper: Hyperparameters, *, min_batch: int = 2) -> LocalResult:
    """Train ``hyper.local_epochs`` epochs on the dataset's training rows.

    A last minibatch of fewer than ``min_batch`` rows (at least 2) joins the
    one before (:func:`batch_bounds`).

    Same arguments give an identical result (a private generator seeded with
    ``hyper.seed`` drives shuffling and dropout).  Raises the errors of
    :func:`build_model` for a bad spec or state, and :class:`IncompatibleData`
    if the model does not fit the data.
    """
    model = build_model(spec, state)
    generator = torch.Generator().manual_seed(hyper.seed)
    seed_dropout(model, generator)
    name = dataset.info.name
    inputs, targets = prepare_data(model, dataset.features, dataset.labels, hyper.loss, name)
    try:
        train_loss = _fit(model, inputs, targets, hyper, generator, min_batch)
    except RuntimeError as exc:
        raise IncompatibleData.for_dataset(name, f"training failed: {str(exc).splitlines()[0][:200]}") from None
    heldout = None
    if dataset.heldout_samples:
        held_inputs, held_targets = prepare_data(
            model, dataset.heldout_features, dataset.heldout_labels, hyper.loss, name
        )
        heldout = evaluate(model, held_inputs, held_targets, hyper.loss)
    return LocalResult(dict(model.state_dict()), dataset.train_samples, train_loss, heldout)


def _correct(output: torch.Tensor, targets: torch.Tensor, loss: LossName) -> Tuple[int, int]:
    if loss is LossName.CROSS_ENTROPY:
        return int((output.argmax(dim=1) == targets).sum()), int(targets.shape[0])
    return int(((output > 0) == (targets > 0.5)).sum()), int(targets.numel())


def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: LossName) -> Metrics:
    """Mean loss and accuracy (argmax for cross_entropy, logit > 0 for bce) in eval mode.

    ``inputs`` and ``targets`` as returned by :func:`prepare_data`; ``mse``
    has no accuracy.  The model is left in eval mode.
    """
    loss_fn = loss_function(loss)
    samples = int(inputs.shape[0])
    total, correct, counted = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, samples, EVAL_CHUNK):
            output = model(inputs[start : start + EVAL_CHUNK])
            chunk = targets[start : start + EVAL_CHUNK]
            total += float(loss_fn(output, chunk)) * chunk.shape[0]
            if loss.is_classification:
                right, seen = _correct(output, chunk, loss)
                correct, counted = correct + right, counted + seen
    accuracy: Optional[float] = correct / counted if loss.is_classification and counted else None
    return Metrics(total / samples if samples else 0.0, accuracy, samples)


def evaluate_heldout(spec: ModelSpec, state: Mapping[str, torch.Tensor], dataset: Dataset,
                     loss: LossName) -> Optional[Metrics]:
    """Metrics of a (global) model on the owner's held-out rows; ``None`` without any."""
    if not dataset.heldout_samples:
        return None
    model = build_model(spec, state)
    inputs, targets = prepare_data(model, dataset.heldout_features, dataset.heldout_labels, loss, dataset.info.name)
    return evaluate(model, inputs, targets, loss)
