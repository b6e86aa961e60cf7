"""The secret randomness of DP-SGD: Poisson sampling masks and Gaussian noise.

Owns :class:`NoiseSource`, an AES-CTR keystream (:func:`node.mpc.expand_seed`,
a fresh 128-bit key from the OS per training unless a test fixes it) read
as uniform float64 values, Bernoulli masks and Gaussian samples.

Why not ``torch.normal`` with a ``torch.Generator``: torch's CPU generator
is a Mersenne Twister, whose whole state follows from 624 outputs, and
seeding it from ``os.urandom`` does not change that; the DP guarantee
assumes the trainer cannot predict or recover the noise (or which rows a
step sampled: amplification by subsampling needs the sample secret).
Opacus' own answer, ``secure_mode``, needs ``torchcsprng``, which is
unmaintained and has no build for current torch.  AES-CTR is what the
secret-sharing core already uses (see DESIGN.md, SPDZ).

Gaussians: Box-Muller on 53-bit uniforms in float64, and each sample is the
sum of four such normals divided by two (still N(0, 1)).  Summing 2n
samples is the defence against floating-point attacks on the Gaussian
mechanism of Holohan & Braghin, "Secure Random Sampling in Differential
Privacy" (arXiv:2107.10138, section 5.1), which Opacus' ``secure_mode``
applies with n = 2; the noise is added to the gradient sum in float64.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional

import torch

from ..mpc import expand_seed, fresh_seed

__all__ = ["NoiseSource"]

_MANTISSA = 53
_SCALE = 2.0**-_MANTISSA
_SUMMED = 4
"""Normals summed per sample (2n with n = 2, as Opacus' secure_mode)."""


class NoiseSource:
    """Uniforms, Bernoulli masks and Gaussians from one AES-CTR key; each draw uses a new stream."""

    def __init__(self, key: Optional[bytes] = None) -> None:
        self._key = fresh_seed() if key is None else key
        self._stream = 0

    @classmethod
    def for_test(cls, seed: int) -> NoiseSource:
        """A reproducible source: only for tests and benchmarks, never a seed a peer chose."""
        digest = hashlib.sha256(f"tessera-dp-noise/v1:{seed}".encode("ascii")).digest()
        return cls(digest[:16])

    def uniform(self, count: int) -> torch.Tensor:
        """``count`` float64 values uniform on [0, 1), 53 random bits each."""
        bits = expand_seed(self._key, (count,), self._stream)
        self._stream += 1
        # The top 53 bits of each word; the mask undoes the sign extension of >>.
        mantissa = (bits >> (64 - _MANTISSA)) & ((1 << _MANTISSA) - 1)
        return mantissa.to(torch.float64) * _SCALE

    def bernoulli(self, count: int, rate: float) -> torch.Tensor:
        """A bool mask of ``count`` independent draws, each true with probability ``rate``."""
        return self.uniform(count) < rate

    def gaussian(self, count: int, std: float) -> torch.Tensor:
        """``count`` float64 samples of N(0, std^2)."""
        if count == 0:
            return torch.zeros(0, dtype=torch.float64)
        normals = self._standard_normals(_SUMMED * count).view(_SUMMED, count)
        return normals.sum(0).mul_(std / math.sqrt(_SUMMED))

    def _standard_normals(self, count: int) -> torch.Tensor:
        pairs = (count + 1) // 2
        uniforms = self.uniform(2 * pairs)
        # Box-Muller: 1 - u is in (0, 1], so the log is finite.
        radius = torch.log1p(-uniforms[:pairs]).mul_(-2.0).sqrt_()
        angle = uniforms[pairs:].mul_(2.0 * math.pi)
        return torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)))[:count]
