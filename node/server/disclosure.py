"""Ops that could disclose the values of an input the caller may not read.

A principal may compute on data it may not read (a data owner's private
dataset, a result derived from one), but nothing observable about the
command may depend on those values: not the result's shape (``describe``
and ``list`` show it), not whether the op succeeds, not its error message.
Three rules keep it so; the executor applies them to every command whose
inputs include an object the caller cannot read (a *restricted* command):

1. :data:`VALUE_SENSITIVE` below lists, per op, the arguments whose values
   decide success or the result's shape.  When such an argument holds an
   unreadable tensor the command is refused (``PERMISSION_DENIED``) before
   it runs.  A readable index selecting rows of a private tensor is fine.
2. A tensor of one element can stand for a number (a size, a dim, ``k``);
   when an unreadable one is among the inputs the executor first runs the op
   on meta tensors (:mod:`node.server.sizing`), where using a value fails,
   and checks the real results have the shapes the meta run predicted.
3. If a restricted command fails anyway, its error is withheld by the
   node's one redaction point (:mod:`peer.server.redaction`), as every
   request's is: torch messages echo values ("index 7 is out of bounds",
   "Target 7 is out of bounds").

Imports torch and ``protocol`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import AbstractSet, Iterator, Mapping, Sequence

import torch

from protocol.errors import PermissionDenied

__all__ = ["Sensitive", "VALUE_SENSITIVE", "check_disclosure", "tensors_in"]


@dataclass(frozen=True, slots=True)
class Sensitive:
    """An argument whose values decide an op's success or its result's shape."""

    position: int
    """Position in the call, the target (method form) counting as 0."""
    keyword: str
    """The same argument passed by keyword."""
    what: str
    """How the refusal names it."""
    integers_only: bool = False
    """Only integer and bool tensors are sensitive (float division by zero is inf, not an error)."""
    when: str | None = None
    """Only when this keyword is given and not None (``div`` with a ``rounding_mode``)."""


_INDEX = "its index"
_DIVISOR = "an integer divisor (division by zero fails)"
_TARGETS = "its class targets (an out-of-range class fails)"

VALUE_SENSITIVE: Mapping[str, tuple[Sensitive, ...]] = MappingProxyType(
    {
        # Out-of-range indices fail, echoing the index; a bool mask sets the shape.
        "getitem": (Sensitive(1, "index", _INDEX),),
        "index_select": (Sensitive(2, "index", _INDEX),),
        "gather": (Sensitive(2, "index", _INDEX),),
        # The result has one row per non-zero element.
        "argwhere": (Sensitive(0, "input", "its input (one row per non-zero element)"),),
        # num_classes=-1 takes the largest class; out-of-range classes fail.
        "one_hot": (Sensitive(0, "tensor", "its class indices (they set the width or fail)"),),
        # Integer division and remainder by zero raise ZeroDivisionError.
        "floor_divide": (Sensitive(1, "other", _DIVISOR, integers_only=True),),
        "remainder": (Sensitive(1, "other", _DIVISOR, integers_only=True),),
        "fmod": (Sensitive(1, "other", _DIVISOR, integers_only=True),),
        "div": (Sensitive(1, "other", _DIVISOR, integers_only=True, when="rounding_mode"),),
        "rfloordiv": (Sensitive(0, "self", _DIVISOR, integers_only=True),),
        "rmod": (Sensitive(0, "self", _DIVISOR, integers_only=True),),
        # Class-index targets out of range fail with "Target 7 is out of bounds".
        "cross_entropy": (Sensitive(1, "target", _TARGETS, integers_only=True),),
        "nll_loss": (Sensitive(1, "target", _TARGETS, integers_only=True),),
    }
)
"""Per op, the arguments that must not hold data the caller may not read."""


def tensors_in(value: object) -> Iterator[torch.Tensor]:
    """Every tensor in a resolved argument (lists and dicts at any depth)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def check_disclosure(
    op: str, call_args: Sequence[object], kwargs: Mapping[str, object], hidden: AbstractSet[int]
) -> None:
    """PermissionDenied if a value-sensitive argument of ``op`` holds a tensor in ``hidden``.

    ``hidden`` holds the ``id`` of every resolved tensor the caller may not
    read; ``call_args`` start with the target in method form.
    """
    for rule in VALUE_SENSITIVE.get(op, ()):
        if rule.when is not None and kwargs.get(rule.when) is None:
            continue
        value = call_args[rule.position] if len(call_args) > rule.position else kwargs.get(rule.keyword)
        for tensor in tensors_in(value):
            if id(tensor) in hidden and not (rule.integers_only and tensor.is_floating_point()):
                raise PermissionDenied(
                    f"op {op!r} is refused: {rule.what} comes from data you may not read, "
                    "and the outcome would reveal its values",
                    {"op": op},
                )
