"""The DP noise source: uniform bits, Bernoulli masks and Gaussians of the right law, never repeated."""

from __future__ import annotations

import math

import torch

from node.fl.noise import NoiseSource


def test_uniforms_are_in_range_and_streams_differ() -> None:
    """53-bit uniforms lie in [0, 1) with mean 1/2; each draw uses a new stream; fresh keys differ."""
    source = NoiseSource.for_test(1)
    first, second = source.uniform(100_000), source.uniform(100_000)
    assert first.dtype == torch.float64
    assert float(first.min()) >= 0.0 and float(first.max()) < 1.0
    assert abs(float(first.mean()) - 0.5) < 0.005
    assert not torch.equal(first, second)
    assert torch.equal(NoiseSource.for_test(1).uniform(10), first[:10])
    assert not torch.equal(NoiseSource().uniform(10), NoiseSource().uniform(10))


def test_bernoulli_rate() -> None:
    """A mask at rate q has about q*n true entries."""
    mask = NoiseSource.for_test(2).bernoulli(200_000, 0.1)
    assert mask.dtype == torch.bool
    assert abs(float(mask.double().mean()) - 0.1) < 0.003


def test_gaussian_moments() -> None:
    """Samples have mean 0, the asked standard deviation, Gaussian kurtosis and tails."""
    std = 2.5
    samples = NoiseSource.for_test(3).gaussian(400_000, std)
    assert samples.dtype == torch.float64 and samples.shape == (400_000,)
    assert abs(float(samples.mean())) < 0.02
    assert abs(float(samples.std()) / std - 1) < 0.005
    z = samples / std
    assert abs(float(z.pow(4).mean()) - 3.0) < 0.05
    beyond = float((z.abs() > 3).double().mean())
    assert abs(beyond - math.erfc(3 / math.sqrt(2))) < 0.0006
    assert NoiseSource.for_test(3).gaussian(0, 1.0).numel() == 0
    assert NoiseSource.for_test(3).gaussian(5, 1.0).numel() == 5
