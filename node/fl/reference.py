"""Reference FedAvg in plain PyTorch: every owner in one process, no specs, no wire.

Owns :func:`plain_fedavg`, the yardstick the networked FedAvg is checked
against.  It is written out again on purpose: it uses no spec, no
:func:`node.fl.local.train_locally` and no :func:`node.fl.aggregate.fedavg`,
only ``copy.deepcopy``, ``load_state_dict`` and a textbook loop.  It shares
with the networked path exactly what both must agree on to be bit-for-bit
equal:

- the seeds: owner ``i`` in round ``r`` trains with a private generator
  seeded ``owner_seed(hyper.seed, r, i)`` (:mod:`node.fl.seeds`);
- the order of random draws: per epoch one ``torch.randperm(n, generator)``,
  and dropout masks from the same generator (:func:`node.fl.local.seed_dropout`);
- the batches: contiguous slices of the permuted rows, a trailing single
  sample merged into the batch before;
- the average: ``sum_i(t_i.double() * n_i) / sum_i n_i`` in owner order, cast
  back (integer buffers rounded to nearest).

Each round every owner starts from the global state with a fresh optimiser
(no optimiser state crosses rounds), as in McMahan et al. 2017, Algorithm 1.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from .hyperparameters import Hyperparameters, LossName, loss_function, make_optimizer
from .local import seed_dropout
from .seeds import owner_seed

__all__ = ["ReferenceRun", "plain_fedavg"]


@dataclass(frozen=True, slots=True, eq=False)
class ReferenceRun:
    """The final global state and each round's sample-weighted mean training loss."""

    state: Dict[str, torch.Tensor]
    train_losses: Tuple[float, ...]


def _train(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, hyper: Hyperparameters,
           generator: torch.Generator) -> float:
    loss_fn = loss_function(hyper.loss)
    optimizer = make_optimizer(model.parameters(), hyper)
    if hyper.loss is LossName.CROSS_ENTROPY:
        y = y.to(torch.int64)
    else:
        y = y.to(torch.float32)
    n = x.shape[0]
    starts = list(range(0, n, hyper.batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    total = 0.0
    model.train()
    for _ in range(hyper.local_epochs):
        order = torch.randperm(n, generator=generator)
        xs, ys = x[order], y[order]
        for start, stop in zip(starts, starts[1:] + [n]):
            optimizer.zero_grad(set_to_none=True)
            out = model(xs[start:stop])
            target = ys[start:stop]
            if hyper.loss is not LossName.CROSS_ENTROPY:
                target = target.reshape(out.shape)
            loss = loss_fn(out, target)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.item() * (stop - start)
    return total / (n * hyper.local_epochs)


def _average(states: List[Dict[str, torch.Tensor]], counts: List[int]) -> Dict[str, torch.Tensor]:
    total = sum(counts)
    averaged = {}
    for key, first in states[0].items():
        acc = torch.zeros(first.shape, dtype=torch.float64)
        for state, count in zip(states, counts):
            acc += state[key].double() * count
        acc /= total
        averaged[key] = (acc if first.is_floating_point() else acc.round()).to(first.dtype)
    return averaged


def plain_fedavg(model: nn.Sequential, owners: Sequence[Tuple[torch.Tensor, torch.Tensor]],
                 hyper: Hyperparameters, rounds: int) -> ReferenceRun:
    """FedAvg of ``model`` over the owners' training rows ``(features, labels)``.

    ``model`` is not modified; its state is the round-0 global state.
    """
    if rounds < 1 or not owners:
        raise ValueError("plain_fedavg needs at least one round and one owner")
    global_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses: List[float] = []
    for round_index in range(rounds):
        states, counts, round_losses = [], [], []
        for owner_index, (x, y) in enumerate(owners):
            local = copy.deepcopy(model)
            local.load_state_dict(global_state)
            generator = torch.Generator().manual_seed(owner_seed(hyper.seed, round_index, owner_index))
            seed_dropout(local, generator)
            round_losses.append(_train(local, x, y, hyper, generator))
            states.append(local.state_dict())
            counts.append(int(x.shape[0]))
        global_state = _average(states, counts)
        losses.append(sum(l * c for l, c in zip(round_losses, counts)) / sum(counts))
    return ReferenceRun(global_state, tuple(losses))
