"""Hyperparameters of local training, and the closed tables of optimisers and losses.

Owns :class:`Hyperparameters` (frozen, validated on construction),
:class:`OptimizerName` and :class:`LossName` (closed enums; names from the
wire go through :func:`parse_optimizer` / :func:`parse_loss`, which list the
valid names in their error), :func:`make_optimizer` and :func:`loss_function`
(explicit tables, never ``getattr(torch.optim, name)``).

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Callable, Dict, Iterable, Mapping, Type, TypeVar

import torch
from torch.nn import functional as F

from .errors import HyperparameterError
from .optimizers import Adam, LocalOptimizer, Sgd

__all__ = [
    "OptimizerName",
    "LossName",
    "Hyperparameters",
    "LossFunction",
    "parse_optimizer",
    "parse_loss",
    "make_optimizer",
    "loss_function",
    "MAX_LOCAL_EPOCHS",
    "MAX_BATCH_SIZE",
    "MAX_LEARNING_RATE",
]

MAX_LOCAL_EPOCHS = 1000
MAX_BATCH_SIZE = 2**20
MAX_LEARNING_RATE = 100.0
MAX_SEED = 2**63 - 1


class OptimizerName(str, enum.Enum):
    """Optimisers a trainer may ask for."""

    SGD = "sgd"
    ADAM = "adam"


class LossName(str, enum.Enum):
    """Losses a trainer may ask for; the first two are classification losses."""

    CROSS_ENTROPY = "cross_entropy"
    BCE_WITH_LOGITS = "bce_with_logits"
    MSE = "mse"

    @property
    def is_classification(self) -> bool:
        return self is not LossName.MSE


LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOSSES: Mapping[LossName, LossFunction] = {
    LossName.CROSS_ENTROPY: F.cross_entropy,
    LossName.BCE_WITH_LOGITS: F.binary_cross_entropy_with_logits,
    LossName.MSE: F.mse_loss,
}

_E = TypeVar("_E", OptimizerName, LossName)


def _parse(kind: Type[_E], field: str, name: object) -> _E:
    if isinstance(name, kind):
        return name
    if type(name) is str:
        try:
            return kind(name)
        except ValueError:
            pass
    raise HyperparameterError.for_name(field, name, (member.value for member in kind))


def parse_optimizer(name: object) -> OptimizerName:
    """``"sgd"`` -> :attr:`OptimizerName.SGD`; anything unknown -> :class:`HyperparameterError`."""
    return _parse(OptimizerName, "optimizer", name)


def parse_loss(name: object) -> LossName:
    """``"mse"`` -> :attr:`LossName.MSE`; anything unknown -> :class:`HyperparameterError`."""
    return _parse(LossName, "loss", name)


def _number(field: str, value: object, low: float, high: float, *, open_low: bool) -> float:
    if type(value) not in (int, float):
        raise HyperparameterError.for_field(field, value, "expected a number")
    number = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(number) and (number > low if open_low else number >= low) and number <= high):
        bracket = "(" if open_low else "["
        raise HyperparameterError.for_field(field, value, f"must be in {bracket}{low}, {high}]")
    return number


def _integer(field: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise HyperparameterError.for_field(field, value, f"expected an integer in [{low}, {high}]")
    return value


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """What a data owner needs to train one round locally; checked on construction.

    ``momentum`` applies to SGD only (Adam with a non-zero momentum is
    refused rather than silently ignored); ``weight_decay`` to both.
    ``seed`` seeds the owner's local generator (shuffling, dropout masks);
    see :func:`node.fl.seeds.owner_seed` for how a job's seed becomes one.
    """

    lr: float
    local_epochs: int = 1
    batch_size: int = 32
    optimizer: OptimizerName = OptimizerName.SGD
    loss: LossName = LossName.CROSS_ENTROPY
    seed: int = 0
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _number("lr", self.lr, 0.0, MAX_LEARNING_RATE, open_low=True)
        _integer("local_epochs", self.local_epochs, 1, MAX_LOCAL_EPOCHS)
        _integer("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _integer("seed", self.seed, 0, MAX_SEED)
        _number("momentum", self.momentum, 0.0, 1.0, open_low=False)
        _number("weight_decay", self.weight_decay, 0.0, 1.0, open_low=False)
        object.__setattr__(self, "optimizer", parse_optimizer(self.optimizer))
        object.__setattr__(self, "loss", parse_loss(self.loss))
        for name in ("lr", "momentum", "weight_decay"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.optimizer is OptimizerName.ADAM and self.momentum != 0.0:
            raise HyperparameterError.for_field("momentum", self.momentum, "applies to sgd only")

    def to_wire(self) -> Dict[str, object]:
        wire: Dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        wire["optimizer"] = self.optimizer.value
        wire["loss"] = self.loss.value
        return wire

    @classmethod
    def from_wire(cls, value: object) -> Hyperparameters:
        """Check an untrusted map; unknown fields and a missing ``lr`` are refused."""
        if not isinstance(value, dict):
            raise HyperparameterError.for_field("", value, "expected a map")
        known = {f.name for f in fields(cls)}
        for key in value:
            if key not in known:
                raise HyperparameterError.for_name("hyperparameter", key, sorted(known))
        if "lr" not in value:
            raise HyperparameterError.for_field("lr", None, "required")
        return cls(**value)


def make_optimizer(params: Iterable[torch.nn.Parameter], hyper: Hyperparameters) -> LocalOptimizer:
    """The optimiser ``hyper`` names, over ``params`` (bit for bit torch.optim's, see optimizers)."""
    if hyper.optimizer is OptimizerName.SGD:
        return Sgd(params, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    return Adam(params, lr=hyper.lr, weight_decay=hyper.weight_decay)


def loss_function(name: LossName) -> LossFunction:
    """The mean-reduced torch loss for ``name``."""
    return _LOSSES[name]
