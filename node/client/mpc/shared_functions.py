"""What a :class:`~node.client.mpc.shared.SharedTensor` answers by delegation.

Runs in the user's process.  Comparisons (``>``, ``sign``, ``max``, ...),
approximations (``exp``, ``sigmoid``, ...) and softmax are written once in
:mod:`.comparisons`, :mod:`.approximations` and :mod:`.softmax`, for shared
and plain tensors alike; this mixin only gives them their PyTorch method
names, and answers ``torch.f(shared, ...)`` through the hand-written table
of :mod:`.shared_torch`.  It holds no state and keeps the shared tensor
module to its own concept (shares and the ops that touch them directly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

from . import approximations, comparisons, softmax
from .shared_torch import dispatch

if TYPE_CHECKING:
    from .shared import SharedTensor

__all__ = ["SharedFunctions"]


class SharedFunctions:
    """Comparisons, non-linear functions and torch dispatch, mixed into ``SharedTensor``."""

    __slots__ = ()

    def __gt__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.gt(self, other))

    def __ge__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.ge(self, other))

    def __lt__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.lt(self, other))

    def __le__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.le(self, other))

    gt, ge, lt, le = __gt__, __ge__, __lt__, __le__

    def sign(self) -> SharedTensor:
        return _shared(comparisons.sign(self))

    def abs(self) -> SharedTensor:
        return _shared(comparisons.abs_(self))

    __abs__ = abs

    def clamp(self, min: Any = None, max: Any = None) -> SharedTensor:  # noqa: A002 - torch's names
        return _shared(comparisons.clamp(self, min, max))

    clip = clamp

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        """The largest value, ``(values, indices)`` along ``dim``, or the elementwise max with a tensor."""
        return comparisons.max_(self, dim, keepdim)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        return comparisons.min_(self, dim, keepdim)

    def amax(self, dim: int, keepdim: bool = False) -> SharedTensor:
        return _shared(comparisons.amax(self, dim, keepdim))

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """A shared one-hot of this shape marking the maximum (not an index: see ``comparisons.argmax``)."""
        return _shared(comparisons.argmax(self, dim, keepdim))

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        return _shared(comparisons.argmin(self, dim, keepdim))

    def exp(self) -> SharedTensor:
        return _shared(approximations.exp(self))

    def log(self) -> SharedTensor:
        return _shared(approximations.log(self))

    def reciprocal(self) -> SharedTensor:
        return _shared(approximations.reciprocal(self))

    def sqrt(self) -> SharedTensor:
        return _shared(approximations.sqrt(self))

    def rsqrt(self) -> SharedTensor:
        return _shared(approximations.rsqrt(self))

    def sigmoid(self) -> SharedTensor:
        return _shared(approximations.sigmoid(self))

    def tanh(self) -> SharedTensor:
        return _shared(approximations.tanh(self))

    def softmax(self, dim: int) -> SharedTensor:
        return _shared(softmax.softmax(self, dim))

    def log_softmax(self, dim: int) -> SharedTensor:
        return _shared(softmax.log_softmax(self, dim))

    @classmethod
    def __torch_function__(
        cls, func: Callable[..., Any], types: Sequence[type], args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """``torch.f(shared, ...)`` and ``tensor op shared`` for the ops of ``SharedTensor``."""
        return dispatch(cls, func, tuple(args), kwargs or {})


def _shared(value: Any) -> SharedTensor:
    """A comparison or approximation of a shared tensor, which is a shared tensor (typed for mypy).

    Only ``SharedTensor`` mixes this class in, so the check is the one
    ``isinstance(value, SharedTensor)`` would make, without importing it.
    """
    assert isinstance(value, SharedFunctions)
    return cast("SharedTensor", value)
