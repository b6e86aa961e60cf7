"""Our SGD and Adam give exactly torch.optim's parameters, step for step."""

from __future__ import annotations

import subprocess
import sys
from typing import Callable

import pytest
import torch

from node.fl.optimizers import Adam, LocalOptimizer, Sgd
from tests.support import ROOT


def _model(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _train(model: torch.nn.Sequential, optimizer: LocalOptimizer | torch.optim.Optimizer) -> None:
    generator = torch.Generator().manual_seed(7)
    for _ in range(25):
        x = torch.randn(16, 6, generator=generator)
        y = torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


CASES: dict[str, tuple[Callable[..., LocalOptimizer], Callable[..., torch.optim.Optimizer], dict[str, float]]] = {
    "sgd": (Sgd, torch.optim.SGD, {"lr": 0.1}),
    "sgd-momentum": (Sgd, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "sgd-momentum-decay": (Sgd, torch.optim.SGD, {"lr": 0.05, "momentum": 0.5, "weight_decay": 1e-3}),
    "adam": (Adam, torch.optim.Adam, {"lr": 1e-3}),
    "adam-decay": (Adam, torch.optim.Adam, {"lr": 3e-3, "weight_decay": 1e-2}),
}


@pytest.mark.parametrize("case", CASES)
def test_bit_for_bit_equal_to_torch_optim(case: str) -> None:
    """25 steps with our optimiser leave every parameter bit-identical to torch.optim's."""
    ours_class, theirs_class, options = CASES[case]
    ours, theirs = _model(3), _model(3)
    _train(ours, ours_class(ours.parameters(), **options))
    _train(theirs, theirs_class(theirs.parameters(), **options))
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(a, b), name


def test_parameters_without_gradients_are_left_alone() -> None:
    """A parameter that got no gradient this step is neither moved nor decayed."""
    frozen, used = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = Adam([frozen, used], lr=0.1, weight_decay=0.5)
    (used * 2).sum().backward()
    optimizer.step()
    assert torch.equal(frozen, torch.ones(3)) and not torch.equal(used, torch.ones(3))


def test_local_training_does_not_import_dynamo() -> None:
    """Unlike torch.optim, a local training step never imports torch._dynamo (a second of start-up)."""
    script = (
        "import sys, torch\n"
        "from node.fl.hyperparameters import Hyperparameters, OptimizerName, make_optimizer\n"
        "for name in OptimizerName:\n"
        "    model = torch.nn.Linear(2, 2)\n"
        "    optimizer = make_optimizer(model.parameters(), Hyperparameters(0.1, optimizer=name))\n"
        "    model(torch.ones(1, 2)).sum().backward()\n"
        "    optimizer.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
