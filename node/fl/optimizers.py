"""SGD and Adam for local training, step for step what ``torch.optim`` computes.

Why not ``torch.optim`` itself: constructing any torch optimiser imports
``torch._dynamo`` (its ``add_param_group`` is wrapped in
``torch._disable_dynamo``), which costs about a second of CPU in every data
owner process before its first round.  The arithmetic below is torch's
single-tensor path (the one it uses for CPU tensors: no foreach, no fused
kernels), in the same order with the same in-place ops, so a run is bit
for bit the one ``torch.optim.SGD``/``Adam`` gives; a test compares them.

Supported: SGD with momentum (no dampening, no Nesterov) and L2 weight
decay; Adam with default betas (0.9, 0.999), eps 1e-8 and L2 weight decay
(not decoupled, no AMSGrad) — what :class:`~node.fl.hyperparameters.Hyperparameters`
can ask for.  Must not import asyncio, websockets, ``node.server`` or
``node.client``.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import torch

__all__ = ["LocalOptimizer", "Sgd", "Adam"]


class LocalOptimizer(Protocol):
    """What local training needs from an optimiser."""

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> None: ...


class _Base:
    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self.params = [p for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_().zero_()


class Sgd(_Base):
    """``torch.optim.SGD(params, lr, momentum, weight_decay)``, single-tensor path."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self) -> None:
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers.get(index)
                if buf is None:
                    buf = self.buffers[index] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1)
                grad = buf
            param.add_(grad, alpha=-self.lr)


class Adam(_Base):
    """``torch.optim.Adam(params, lr, weight_decay=...)``, single-tensor path."""

    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params)
        self.lr, self.weight_decay = lr, weight_decay
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor, list[float]]] = {}

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.BETA1, self.BETA2
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            entry = self.state.get(index)
            if entry is None:
                zeros = torch.zeros_like(param, memory_format=torch.preserve_format)
                entry = self.state[index] = (zeros, zeros.clone(), [0.0])
            exp_avg, exp_avg_sq, step_box = entry
            # torch keeps the step in a float32 tensor; small integers are exact in it.
            step_box[0] += 1.0
            step = step_box[0]
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = self.lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.EPS)
            param.addcdiv_(exp_avg, denom, value=-step_size)
