"""Running one allowlisted op: the executor's only way into torch.

Runs inside a node.  :func:`run_op` checks the op and its form against
``protocol.ops.OPS``, refuses keywords that would write into an existing
object, calls the op's entry in :data:`OP_TABLE` and hands back a tuple of
CPU tensors, detached unless they require grad: a result computed from a
tensor that requires grad keeps its autograd history (and, through it, the
tensors its backward needs) until a ``grad`` command frees it or the result
is deleted, so remote training can run ``grad`` on it later (what the
history saves is charged by the executor: :mod:`node.server.history`).  Torch errors become ``OpFailed`` naming the op; our
own refusals are ``UnsupportedOp`` or ``BadRequest``; anything else is a bug
and propagates (the session replies ``INTERNAL``).

Pointer refs are resolved by the session before the call: here every
argument is already a plain wire value or a tensor.  Imports torch and
``protocol``; never the session, the store or the transport.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from node.server.ops_table import OP_TABLE
from protocol.errors import BadRequest, OpFailed
from protocol.ops import OpForm, spec_for

__all__ = ["OP_TABLE", "run_op", "estimated_cost", "MAX_ERROR_CHARS"]

MAX_ERROR_CHARS = 300
"""Longest torch error text passed on in an ``OpFailed`` message."""

_TORCH_ERRORS = (TypeError, ValueError, RuntimeError, IndexError, ArithmeticError, AttributeError)
"""What torch raises for bad shapes, dtypes or arguments.  NotImplementedError
is a RuntimeError; AttributeError comes from torch's Python functions given a
non-tensor (``F.normalize(5)``: "'int' object has no attribute 'norm'")."""


def run_op(
    op: str,
    target: torch.Tensor | None,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    device: str = "cpu",
) -> tuple[torch.Tensor, ...]:
    """Run ``op`` on resolved arguments; return its tensors in order.

    ``device="meta"`` runs it on meta tensors, to learn result shapes
    without data (:mod:`node.server.sizing`); results must then be meta too.

    With a target, the op must allow the method form and the target is
    passed first; without one, the function form.  ``out`` and keywords
    starting with ``_`` are refused (``BadRequest``); so is
    ``inplace=True``.  ``out=None`` and ``inplace=False``, the defaults that
    torch's wrappers and ``torch.nn`` modules forward, are dropped.
    """
    form = OpForm.FUNCTION if target is None else OpForm.METHOD
    spec_for(op, form)
    call_kwargs = _checked_kwargs(op, kwargs)
    call_args = tuple(args) if target is None else (target, *args)
    try:
        result = OP_TABLE[op](*call_args, **call_kwargs)
    except _TORCH_ERRORS as exc:
        raise OpFailed(
            f"op {op!r} failed: {_describe(exc)}",
            {"op": op, "error": type(exc).__name__},
        ) from exc
    return _as_tensors(op, result, device, (target, *call_args))


def estimated_cost(target: torch.Tensor | None, args: Sequence[object]) -> int:
    """Total elements of the tensor inputs (target, args, tensors in list args).

    The node compares it with a threshold to run small ops inline and large
    ones off the event loop.
    """
    total = target.numel() if target is not None else 0
    for arg in args:
        if isinstance(arg, torch.Tensor):
            total += arg.numel()
        elif isinstance(arg, list):
            total += sum(item.numel() for item in arg if isinstance(item, torch.Tensor))
    return total


def _checked_kwargs(op: str, kwargs: Mapping[str, object]) -> dict[str, object]:
    checked: dict[str, object] = {}
    for name, value in kwargs.items():
        if name == "out" and value is None:
            continue  # torch's Python wrappers forward their default out=None
        if name == "out" or name.startswith("_"):
            raise BadRequest(
                f"op {op!r} does not accept the keyword {name[:64]!r}",
                {"op": op, "keyword": name[:64]},
            )
        if name == "inplace":
            if value is not False:
                raise BadRequest(
                    f"op {op!r}: in-place operation is not allowed",
                    {"op": op, "keyword": name},
                )
            continue
        checked[name] = value
    return checked


def _describe(exc: BaseException) -> str:
    """The first line of the exception's message, at most MAX_ERROR_CHARS long.

    Torch's messages name shapes and dtypes; later lines hold hints and C++
    frames that would only add noise (and never belong on the wire).
    """
    text = str(exc).strip().split("\n", 1)[0].strip()
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text or type(exc).__name__


def _as_tensors(
    op: str, result: object, device: str = "cpu", inputs: Sequence[object] = ()
) -> tuple[torch.Tensor, ...]:
    """Normalise a result (tensor, or tuple/namedtuple of tensors) to a tuple of new tensor objects.

    A result that keeps its history but is an input itself (``contiguous``
    or ``float`` of a tensor that already is) becomes a view of it, so that
    no two stored objects are one tensor object.
    """
    if isinstance(result, torch.Tensor):
        items: tuple[object, ...] = (result,)
    elif isinstance(result, tuple):  # torch.return_types.* are tuples too
        items = tuple(result)
    else:
        items = (result,)
    if not items:
        raise OpFailed(f"op {op!r} produced no tensor", {"op": op})
    tensors: list[torch.Tensor] = []
    for item in items:
        if not isinstance(item, torch.Tensor) or item.device.type != device:
            raise OpFailed(
                f"op {op!r} produced a {type(item).__name__} that is not a {device} tensor",
                {"op": op},
            )
        if not item.requires_grad:
            item = item.detach()
        elif any(item is given for given in inputs):
            item = item.view_as(item)
        tensors.append(item)
    return tuple(tensors)
