"""Non-linear functions on shared (or plain) tensors by documented approximations.

Runs in the user's process.  Fixed-point shares support only additions and
products, so every function here is a polynomial, a Newton-Raphson
iteration, or a few comparisons (:mod:`.comparisons`); the same code runs
on a ``torch.Tensor`` (:mod:`.values`) and gives the plaintext value of the
same approximation.  Each function has a documented input range; inputs
outside it are clamped into it (for a plaintext input a
:class:`~node.client.mpc.values.RangeWarning` is issued once per call,
naming the count; a shared input's range is secret, so it is clamped
silently: never garbage).

==============  ====================  ==========================  ============
function        range                 max error (float64 grid)    rounds (2 p.)
==============  ====================  ==========================  ============
exp             [-16, 8]              1.1e-4 relative             9
reciprocal      |x| in [0.005, 500]   8.2e-12 relative            32
rsqrt           [0.01, 150]           2.0e-9 relative             25
sqrt            [0, 150]              2.0e-9 rel. (>= 0.01),      26
                                      0.025 abs. below 0.01
log             [1e-3, 1e3]           3.9e-8 absolute             42
sigmoid / tanh  all reals             1.1e-7 / 2.3e-7 absolute    18
==============  ====================  ==========================  ============

The float64 column is the approximation alone (``tests/node/client/mpc/
test_approximations.py`` measures it on a grid of 10^5 points).  On shares,
16-bit fixed point adds its own error: each truncation is off by up to one
unit of 2^-16, and ``exp``'s 4 squarings multiply the rounding of x/16 by
16, about 2.5e-4 relative (README, "Comparisons and approximations").

Algorithms (the constants of the initial guesses are CrypTen's):

- ``exp``: e^x = (e^(x/16))^16, with e^u for u = x/16 in [-1, 0.5] a
  degree-8 Taylor polynomial (its powers in 3 rounds: u^2; u^3, u^4;
  u^5..u^8) and 4 squarings.  Chosen over CrypTen's limit (1 + x/2^8)^(2^8)
  (8 rounds, 12% relative error at x = 8, 0.8% at x = -2, and 2^8 times the
  rounding of x/2^8) for 1 round less and 100x less error.
- ``reciprocal``: Newton-Raphson y <- y(2 - xy), 10 iterations, from
  y0 = 3 e^(0.5 - x) + 0.003, on |x| with the sign restored.
- ``rsqrt``: Newton-Raphson y <- 1.5y - 0.5(xy)(yy), 8 iterations of 2
  rounds, from
  y0 = 2.2 e^(-(x/2 + 0.2)) + 0.2 - x/1024; ``sqrt(x) = x * rsqrt(x)``, so
  sqrt(0) = 0 and below 0.01 it is 10x (abs error <= 0.025).
- ``log``: 3 Householder iterations of order 8, y <- y - sum_i h^i/i with
  h = 1 - x e^(-y), from y0 = x/120 - 20 e^(-2x - 1) + 3.
- ``sigmoid``: by symmetry on |x|, 1/(1 + e^-|x|) with |x| clamped at 16
  (an error below 1.2e-7), the denominator in (1, 2] inverted by 3
  Newton-Raphson steps from the best linear guess 24/17 - 8/17 d (error
  1/17 squared three times), then sigmoid(x) = 1 - sigmoid(|x|) for x < 0.
  No exponential of a large positive value is ever computed, so no range
  limit and no overflow of the fixed-point ring.  ``tanh(x) = 2
  sigmoid(2x) - 1``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import comparisons
from .values import Value, drelu, is_plain, relu, require_float, select, warn_outside

__all__ = [
    "EXP_RANGE",
    "LOG_RANGE",
    "RECIPROCAL_RANGE",
    "SQRT_RANGE",
    "div",
    "exp",
    "exp_nonpositive",
    "log",
    "powers",
    "reciprocal",
    "reciprocal_in",
    "rsqrt",
    "sigmoid",
    "sqrt",
    "tanh",
]

EXP_RANGE = (-16.0, 8.0)
"""Below -16 e^x is under 1.2e-7; above 8 the squarings would leave the safe range of the ring."""
RECIPROCAL_RANGE = (0.005, 500.0)
"""Of |x|: the initial guess converges in 10 iterations there (x y0 < 2 up to ~660)."""
SQRT_RANGE = (0.01, 150.0)
"""rsqrt's initial guess turns negative near 200 (its -x/1024 term)."""
LOG_RANGE = (1e-3, 1e3)
"""The initial guess x/120 + 3 is too far from log x above ~1e3 for 3 iterations."""

_EXP_TAYLOR_DEGREE = 8
_EXP_SQUARINGS = 4
_RECIPROCAL_ITERATIONS = 10
_RSQRT_ITERATIONS = 8
_LOG_ITERATIONS = 3
_LOG_ORDER = 8
_SIGMOID_CLAMP = 16.0
_UNIT_RECIPROCAL_ITERATIONS = 3
_NEWTON_TOLERANCE = 1e-7
_RECIPROCAL_POSITIVE_ROUNDS = 29
_RSQRT_CAP = 31.6
"""Caps the exponent of rsqrt's guess, -(x/2 + 0.2), at -16."""


def exp(x: Value) -> Value:
    """e^x on [-16, 8] (clamped outside): 1.1e-4 relative error; 9 rounds (clamp 2, powers 3, squarings 4).

    Below -16 the clamp gives e^-16 (1.1e-7) instead of a smaller number.
    """
    require_float(x, "exp")
    return _exp(_into(x, EXP_RANGE, "exp"))


def exp_nonpositive(x: Value) -> Value:
    """e^x for x <= 0 (e.g. max-subtracted logits): x below -16 counts as -16, without a warning; 9 rounds.

    Part of softmax's algorithm: each such term is off by at most 1.1e-7.
    """
    low = EXP_RANGE[0]
    if is_plain(x):
        return _exp(torch.clamp(x, low, 0.0))
    return _exp(relu(x - low) + low)


def _exp(x: Value) -> Value:
    """e^x for x already in ``EXP_RANGE``: (Taylor_8(x/16))^16, 7 rounds."""
    u = x * (1.0 / 2**_EXP_SQUARINGS)
    terms = powers(u, _EXP_TAYLOR_DEGREE)
    y = terms[1] + 1.0
    for k in range(2, _EXP_TAYLOR_DEGREE + 1):
        y = y + terms[k] * (1.0 / math.factorial(k))
    for _ in range(_EXP_SQUARINGS):
        y = y * y
    return y


def powers(x: Value, n: int) -> list[Value]:
    """``[None, x, x^2, ..., x^n]`` in ceil(log2 n) rounds: each round multiplies the top power by all below it."""
    if n < 1:
        raise ValueError("powers needs n >= 1")
    out: list[Value] = [None, x]
    while len(out) - 1 < n:
        top = len(out) - 1
        out.extend(out[top] * out[j] for j in range(1, min(top, n - top) + 1))
    return out


def reciprocal(x: Value, positive: bool = False) -> Value:
    """1/x for |x| in [0.005, 500] (|x| clamped into it, sign kept): 1e-11 relative error.

    32 rounds: sign 1, |x| 1, clamps 2, initial guess 7, 10 Newton-Raphson
    iterations of 2, sign 1.  ``positive=True`` skips the sign (29 rounds)
    when x > 0 is known.
    """
    require_float(x, "reciprocal")
    if positive:
        return _reciprocal_positive(x)
    sign = drelu(x) * 2 - 1  # 1 where x >= 0, else -1 (an exact integer)
    return _reciprocal_positive(x * sign) * sign


def _reciprocal_positive(x: Value) -> Value:
    """1/x for x > 0: Newton-Raphson from CrypTen's guess (x y0 < 2 keeps it convergent).

    The guess's exponent 0.5 - x is kept in exp's range by capping x at 16.5,
    in the same comparison round as the range clamp.
    """
    x, capped = _clamp_and_cap(x, RECIPROCAL_RANGE, 16.5, "reciprocal")
    y = _exp(0.5 - capped) * 3.0 + 0.003
    for _ in range(_RECIPROCAL_ITERATIONS):
        y = y * (2.0 - x * y)
    return y


def reciprocal_in(x: Value, low: float, high: float) -> Value:
    """1/x for x known to lie in [low, high], 0 < low (softmax's sum of k terms lies in [1, k]); not clamped.

    Newton-Raphson from the best linear guess on [low, high] (equioscillating
    error E = 1 - 8 low high / ((low + high)^2 + 4 low high)), iterated until
    E^(2^t) < 1e-7: no exponential for the guess, so 2t rounds (6 for
    [1, 2], 10 for [1, 10], 16 for [1, 100]).  When that would be slower
    than :func:`reciprocal` (29 rounds), x is scaled into reciprocal's range
    and inverted by it.
    """
    if not 0 < low <= high:
        raise ValueError(f"reciprocal_in needs 0 < low <= high, got [{low}, {high}]")
    beta = 8.0 / ((low + high) ** 2 + 4.0 * low * high)
    error = 1.0 - beta * low * high
    iterations = 0 if error <= 0 else max(0, math.ceil(math.log2(math.log(_NEWTON_TOLERANCE) / math.log(error))))
    if 2 * iterations >= _RECIPROCAL_POSITIVE_ROUNDS:
        scale = max(1.0, high / 400.0)
        return reciprocal(x * (1.0 / scale), positive=True) * (1.0 / scale)
    y = x * -beta + beta * (low + high)
    for _ in range(iterations):
        y = y * (2.0 - x * y)
    return y


def _reciprocal_unit(d: Value) -> Value:
    """1/d for d in [1, 2]: 3 Newton-Raphson steps from 24/17 - 8/17 d (relative error < 2e-10), 6 rounds."""
    y = d * (-8.0 / 17.0) + 24.0 / 17.0
    for _ in range(_UNIT_RECIPROCAL_ITERATIONS):
        y = y * (2.0 - d * y)
    return y


def div(x: Any, y: Value) -> Value:
    """``x / y`` for a shared ``y``: ``x * reciprocal(y)`` (33 rounds; y's range as reciprocal's)."""
    return x * reciprocal(y)


def rsqrt(x: Value) -> Value:
    """1/sqrt(x) on [0.01, 150] (clamped): 2e-9 relative error; 25 rounds (clamps 2, guess 7, 8 iterations of 2)."""
    require_float(x, "rsqrt")
    return _rsqrt(*_clamp_and_cap(x, SQRT_RANGE, _RSQRT_CAP, "rsqrt"))


def _rsqrt(x: Value, capped: Value) -> Value:
    """Newton-Raphson y <- 1.5 y - 0.5 (x y)(y y): the two inner products in one round, the outer in the next."""
    y = _exp((capped * 0.5 + 0.2) * -1.0) * 2.2 + 0.2 - x * (1.0 / 1024)
    for _ in range(_RSQRT_ITERATIONS):
        y = y * 1.5 - (x * y) * (y * y) * 0.5
    return y


def sqrt(x: Value) -> Value:
    """sqrt(x) = x * rsqrt(x) on [0, 150] (clamped): 26 rounds.

    Below 0.01 rsqrt sees 0.01, so sqrt(x) is 10x there (abs error <= 0.025,
    exact at 0); negative inputs give 0 (torch: nan).  The clamps to [0, 150],
    to [0.01, 150] and the guess's cap share one round of comparisons.
    """
    require_float(x, "sqrt")
    low, high = SQRT_RANGE
    warn_outside(x, 0.0, high, "sqrt")
    if is_plain(x):
        inner = torch.clamp(x, low, high)
        return torch.clamp(x, 0.0, high) * _rsqrt(inner, torch.clamp(inner, max=_RSQRT_CAP))
    over, above_low, above_cap = relu(x - high), relu(x - low), relu(x - _RSQRT_CAP)
    return (relu(x) - over) * _rsqrt(above_low - over + low, above_low - above_cap + low)


def log(x: Value) -> Value:
    """Natural log on [1e-3, 1e3] (clamped): 4e-8 absolute error; 42 rounds.

    Clamps 2, initial guess 7, then 3 iterations of e^-y (7), x e^-y (1)
    and the powers of h (3).
    """
    require_float(x, "log")
    x, capped = _clamp_and_cap(x, LOG_RANGE, 7.5, "log")
    y = x * (1.0 / 120) - _exp(capped * -2.0 - 1.0) * 20.0 + 3.0
    for _ in range(_LOG_ITERATIONS):
        h = 1.0 - x * _exp(y * -1.0)  # y stays in [-6.9, 11.4] over LOG_RANGE (measured): no clamp needed
        terms = powers(h, _LOG_ORDER)
        correction = terms[1]
        for i in range(2, _LOG_ORDER + 1):
            correction = correction + terms[i] * (1.0 / i)
        y = y - correction
    return y


def sigmoid(x: Value) -> Value:
    """1/(1 + e^-x) on all reals: 1.1e-7 absolute error (float64); 18 rounds.

    |x| (2 rounds) clamped at 16 (2), e^-|x| (7), its reciprocal in (1, 2]
    (6), and the mirror for negative x (1).
    """
    require_float(x, "sigmoid")
    positive = drelu(x)
    magnitude = x * (positive * 2 - 1)
    capped = _SIGMOID_CLAMP - relu(_SIGMOID_CLAMP - magnitude)
    p = _reciprocal_unit(_exp(capped * -1.0) + 1.0)
    return select(positive, p, 1.0 - p)


def tanh(x: Value) -> Value:
    """tanh(x) = 2 sigmoid(2x) - 1 on all reals: 2.3e-7 absolute error; 18 rounds."""
    require_float(x, "tanh")
    return sigmoid(x * 2.0) * 2.0 - 1.0


def _clamp_and_cap(x: Value, bounds: tuple[float, float], cap: float, name: str) -> tuple[Value, Value]:
    """``(clamp(x, low, high), clamp(x, low, cap))`` from one round of three comparisons (2 rounds)."""
    low, high = bounds
    warn_outside(x, low, high, name)
    if is_plain(x):
        return torch.clamp(x, low, high), torch.clamp(x, low, cap)
    above_low, above_high, above_cap = relu(x - low), relu(x - high), relu(x - cap)
    return above_low - above_high + low, above_low - above_cap + low


def _into(x: Value, bounds: tuple[float, float], name: str) -> Value:
    """``x`` clamped into ``bounds`` (2 rounds for shared x); a plaintext ``x`` outside warns once."""
    low, high = bounds
    warn_outside(x, low, high, name)
    return comparisons.clamp(x, low, high)
