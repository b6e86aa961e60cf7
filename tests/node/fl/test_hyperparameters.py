"""Hyperparameters: closed names, checked values, the optimiser and loss tables."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from node.fl.optimizers import Adam, Sgd

from node.fl.errors import HyperparameterError
from node.fl.hyperparameters import (
    Hyperparameters,
    LossName,
    OptimizerName,
    loss_function,
    make_optimizer,
    parse_loss,
    parse_optimizer,
)


def test_unknown_names_list_the_valid_ones() -> None:
    """Unknown optimiser and loss names raise errors listing every valid name."""
    with pytest.raises(HyperparameterError, match="valid: sgd, adam"):
        parse_optimizer("rmsprop")
    with pytest.raises(HyperparameterError, match="valid: cross_entropy, bce_with_logits, mse"):
        parse_loss("nll")
    with pytest.raises(HyperparameterError):
        parse_loss(3)


def test_wire_round_trip() -> None:
    """to_wire / from_wire round-trips, names as strings."""
    hyper = Hyperparameters(lr=0.1, local_epochs=2, batch_size=16, optimizer=OptimizerName.SGD,
                            loss=LossName.MSE, seed=9, momentum=0.9, weight_decay=1e-4)
    wire = hyper.to_wire()
    assert wire["optimizer"] == "sgd" and wire["loss"] == "mse"
    assert Hyperparameters.from_wire(wire) == hyper


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"lr": 0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"lr": 0.1, "batch_size": True}, "batch_size"),
        ({"lr": 0.1, "batch_size": 0}, "batch_size"),
        ({"lr": 0.1, "local_epochs": 10**6}, "local_epochs"),
        ({"lr": 0.1, "seed": -1}, "seed"),
        ({"lr": 0.1, "momentum": 1.5}, "momentum"),
        ({"lr": 0.1, "optimizer": "adam", "momentum": 0.9}, "momentum"),
        ({"lr": 0.1, "optimizer": "lbfgs"}, "optimizer"),
        ({"lr": 0.1, "betas": [0.9, 0.99]}, "hyperparameter"),
        ({"batch_size": 4}, "lr"),
    ],
)
def test_bad_values_are_refused(wire: dict[str, object], field: str) -> None:
    """Out-of-range, mistyped, unknown and missing fields are refused naming the field."""
    with pytest.raises(HyperparameterError) as caught:
        Hyperparameters.from_wire(wire)
    assert caught.value.details["field"] == field


def test_optimizer_table() -> None:
    """sgd and adam build our torch.optim-equivalent optimisers with the given settings."""
    params = list(nn.Linear(2, 2).parameters())
    sgd = make_optimizer(params, Hyperparameters(lr=0.5, momentum=0.9, weight_decay=0.01))
    assert isinstance(sgd, Sgd) and (sgd.lr, sgd.momentum, sgd.weight_decay) == (0.5, 0.9, 0.01)
    adam = make_optimizer(params, Hyperparameters(lr=0.001, optimizer=OptimizerName.ADAM))
    assert isinstance(adam, Adam) and adam.lr == 0.001


def test_loss_table() -> None:
    """Each loss name maps to its mean-reduced torch loss."""
    out, target = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    assert torch.equal(loss_function(LossName.MSE)(out, target), torch.nn.functional.mse_loss(out, target))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out, target)
    assert torch.equal(loss_function(LossName.BCE_WITH_LOGITS)(out, target), bce)
    ce = torch.nn.functional.cross_entropy(out, torch.tensor([0]))
    assert torch.equal(loss_function(LossName.CROSS_ENTROPY)(out, torch.tensor([0])), ce)
