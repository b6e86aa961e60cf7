"""Optimizers that step shared parameters: :class:`SGD`.

Runs in the user's process.  A step is linear in the shares, with public
hyperparameters: ``p - lr * g`` is one public-scalar product (a local
truncation) and one subtraction on every party, posted without waiting;
nothing is reconstructed.  The same code steps plain parameters (a
plaintext twin of an encrypted run).
"""

from __future__ import annotations

from typing import Iterable

from .autograd import AutogradError, TensorLike, Variable

__all__ = ["SGD"]


class SGD:
    """Stochastic gradient descent with optional momentum (``v = m * v + g``, ``p -= lr * v``), as ``torch.optim.SGD``."""

    def __init__(self, params: Iterable[Variable], lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise AutogradError("SGD got no parameters to optimize", {})
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise AutogradError(f"SGD needs lr > 0, momentum >= 0, weight_decay >= 0 (got {lr}, {momentum}, {weight_decay})", {})
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self._velocity: dict[int, TensorLike] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient (posted; errors surface at the next read)."""
        for p in self.params:
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay:
                grad = grad + p.value * self.weight_decay
            if self.momentum:
                key = id(p)
                previous = self._velocity.get(key)
                grad = grad if previous is None else previous * self.momentum + grad
                self._velocity[key] = grad
            p.value = p.value - grad * self.lr
