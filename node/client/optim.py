"""``node.optim.SGD`` and ``node.optim.Adam``: torch's update rules, for parameters on nodes.

Built like torch's (``SGD(model.parameters(), lr=0.1)``), with the
parameters of a model sent by :func:`node.client.models.send_model`, with
pointers made leaves by ``requires_grad_()``, or with local tensors.  At each
``step`` a sent parameter's update runs on its node as ordinary allowlisted
commands (``detach``, ``mul``, ``add``, ``sqrt``...) on its gradient
pointer, and the result becomes the parameter's new leaf object (op
``leaf``): nothing on the node is written into, and nothing travels but the
commands.  The optimiser's state (momentum, Adam's moments) lives on the
parameter's node too and follows it when the model moves.  A local
parameter is updated locally with the same arithmetic.

The formulas are torch's single-tensor ones (``torch.optim.sgd``,
``torch.optim.adam`` without amsgrad), so a remote step matches a local
``torch.optim`` step on the same values to rounding.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Iterable

import torch

from .models import pointer_of
from .pointer import BasePointer

__all__ = ["Optimizer", "SGD", "Adam"]

Value = Any
"""A ``torch.Tensor`` or a pointer: the arithmetic below is the same for both."""


class Optimizer(abc.ABC):
    """What SGD and Adam share: the parameter list, ``zero_grad`` and the ``step`` loop."""

    def __init__(self, params: Iterable[Any], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for param in self.params:
            if not isinstance(param, (torch.Tensor, BasePointer)):
                hint = (
                    "; an encrypted model's parameters (node.encrypt) step with node.client.mpc.optim.SGD"
                    if type(param).__name__ == "Variable" else ""
                )
                raise TypeError(
                    f"optimizer parameters must be tensors or pointers, not {type(param).__name__}{hint}"
                )
        if lr < 0:
            raise ValueError(f"invalid learning rate: {lr}")
        self.lr = lr
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (torch's ``set_to_none=True``)."""
        for param in self.params:
            _current(param).grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, where it lives."""
        for param, state in zip(self.params, self.state):
            current = _current(param)
            grad = current.grad
            if grad is None:
                continue
            updated = self._update(current.detach(), grad, state)
            if isinstance(current, BasePointer):
                current._take_over(updated.leaf(current.requires_grad))
            else:
                with torch.no_grad():
                    current.copy_(updated)

    @abc.abstractmethod
    def _update(self, value: Value, grad: Value, state: dict[str, Any]) -> Value:
        """The parameter's new value from its detached value, its gradient and its state."""


class SGD(Optimizer):
    """Stochastic gradient descent, with torch's momentum, dampening, nesterov and weight decay."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum and zero dampening")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def _update(self, value: Value, grad: Value, state: dict[str, Any]) -> Value:
        step = grad
        if self.weight_decay:
            step = step + value * self.weight_decay
        if self.momentum:
            buffer = _placed(state.get("momentum_buffer"), value)
            buffer = step if buffer is None else buffer * self.momentum + step * (1 - self.dampening)
            state["momentum_buffer"] = buffer
            step = step + buffer * self.momentum if self.nesterov else buffer
        return value - step * self.lr


class Adam(Optimizer):
    """Adam (Kingma and Ba), torch's formulation with bias correction and L2 weight decay."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid betas: {betas}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, value: Value, grad: Value, state: dict[str, Any]) -> Value:
        beta1, beta2 = self.betas
        if self.weight_decay:
            grad = grad + value * self.weight_decay
        step = state.get("step", 0) + 1
        exp_avg = _placed(state.get("exp_avg"), value)
        exp_avg_sq = _placed(state.get("exp_avg_sq"), value)
        if exp_avg is None or exp_avg_sq is None:
            exp_avg, exp_avg_sq = torch.zeros_like(value), torch.zeros_like(value)
        exp_avg = exp_avg + (grad - exp_avg) * (1 - beta1)  # torch's lerp_(grad, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
        state.update(step=step, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
        step_size = self.lr / (1 - beta1**step)
        denom = exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step) + self.eps
        return value - exp_avg / denom * step_size


def _current(param: Any) -> Any:
    """What a parameter is now: its pointer while its model is sent, else itself."""
    if isinstance(param, torch.Tensor):
        pointer = pointer_of(param)
        if pointer is not None:
            return pointer
    return param


def _placed(state: Value | None, like: Value) -> Value | None:
    """``state`` where ``like`` lives: moved to its node, brought back, or sent there."""
    if state is None:
        return None
    if isinstance(like, BasePointer):
        if isinstance(state, BasePointer):
            return state if state.node is like.node else state.move(like.node)
        return like.node.send(state)
    if isinstance(state, BasePointer):
        return state.get()
    return state
