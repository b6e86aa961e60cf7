"""FedAvg as pure functions: weighted averages of states and of metrics.

Owns :func:`fedavg`, :func:`weighted_metrics` and :func:`round_result`.
No I/O, no model building; the strategies (:mod:`node.fl.strategy`) hand
the owners' results over here in owner-index order (the order matters
bit-for-bit: floating-point sums are not associative).

The average of a state tensor over owners ``i`` with sample counts ``n_i``:

    avg = sum_i (t_i as float64 * n_i) / sum_i n_i        (summed in list order)

then cast back to the tensor's dtype.  Floating tensors (weights, biases,
BatchNorm running means and variances) are averaged that way.  Integer
tensors (BatchNorm's ``num_batches_tracked``) get the same weighted mean,
rounded to the nearest integer (ties to even): every owner starts a round
from the same count and adds its own number of batches, so the rounded
mean is the global count plus the typical owner's batches, and stays exact
below 2**53.  Bool and complex tensors are refused.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch

from .errors import AggregationError
from .results import LocalResult, Metrics
from .spec import State

__all__ = ["RoundResult", "fedavg", "weighted_metrics", "round_result"]


@dataclass(frozen=True, slots=True, eq=False)
class RoundResult:
    """A round's outcome: the new global state and sample-weighted metrics."""

    state: State
    samples: int
    train_loss: float
    heldout: Optional[Metrics]


def _check_weights(weights: Sequence[int], count: int) -> int:
    if count == 0:
        raise AggregationError.for_round("no updates")
    if len(weights) != count:
        raise AggregationError.for_round(f"{count} updates but {len(weights)} sample counts")
    for index, weight in enumerate(weights):
        if type(weight) is not int or weight <= 0:
            raise AggregationError.for_update(index, f"sample count must be a positive integer, got {weight!r}")
    return sum(weights)


def _check_update(index: int, first: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> None:
    if list(state) != list(first):
        missing = [k for k in first if k not in state][:3]
        extra = [k for k in state if k not in first][:3]
        raise AggregationError.for_update(
            index, f"state keys differ from update 0 (missing {missing}, extra {extra}, or another order)"
        )
    for key, tensor in state.items():
        reference = first[key]
        if not isinstance(tensor, torch.Tensor):
            raise AggregationError.for_update(index, f"{key!r} is not a tensor")
        if tensor.shape != reference.shape or tensor.dtype != reference.dtype:
            raise AggregationError.for_update(
                index, f"{key!r} is {tensor.dtype} {tuple(tensor.shape)}, update 0 has "
                f"{reference.dtype} {tuple(reference.shape)}"
            )
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise AggregationError.for_update(index, f"{key!r} has dtype {tensor.dtype}, which is not averaged")


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], samples: Sequence[int]) -> State:
    """Sample-weighted average of state tensors (see the module docstring for the rule)."""
    total = _check_weights(samples, len(states))
    for index, state in enumerate(states):
        _check_update(index, states[0], state)
    averaged: State = {}
    for key, reference in states[0].items():
        accumulator = torch.zeros(reference.shape, dtype=torch.float64)
        for state, weight in zip(states, samples):
            accumulator.add_(state[key].to(torch.float64), alpha=weight)
        accumulator.div_(total)
        if not reference.is_floating_point():
            accumulator.round_()
        averaged[key] = accumulator.to(reference.dtype)
    return averaged


def weighted_metrics(metrics: Sequence[Optional[Metrics]]) -> Optional[Metrics]:
    """Sample-weighted mean loss and accuracy; ``None`` entries (no held-out rows) are skipped.

    The accuracy is ``None`` unless every counted entry has one.
    """
    present = [m for m in metrics if m is not None and m.samples > 0]
    if not present:
        return None
    samples = sum(m.samples for m in present)
    loss = sum(m.loss * m.samples for m in present) / samples
    accuracy: Optional[float] = None
    if all(m.accuracy is not None for m in present):
        accuracy = sum((m.accuracy or 0.0) * m.samples for m in present) / samples
    return Metrics(loss, accuracy, samples)


def round_result(state: State, results: Sequence[LocalResult]) -> RoundResult:
    """A round's outcome: its new global ``state`` and the owners' sample-weighted metrics, in the order given."""
    total = sum(result.samples for result in results)
    train_loss = sum(r.train_loss * r.samples for r in results) / total
    return RoundResult(state, total, train_loss, weighted_metrics([r.heldout for r in results]))
