"""Statistical checks that a tensor of ring elements looks uniform over Z/2^64."""

from __future__ import annotations

import math

import torch

Z_CRITICAL = 4.75
"""One-sided normal quantile for p = 1e-6: a sound sharing fails once in a million runs."""


def chi_square_critical(dof: int, z: float = Z_CRITICAL) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile."""
    h = 2.0 / (9.0 * dof)
    return dof * (1.0 - h + z * math.sqrt(h)) ** 3


def top_byte_chi_square(values: torch.Tensor) -> float:
    """Chi-square statistic of the top byte against uniform over 256 bins."""
    top = ((values.flatten() >> 56) & 0xFF).to(torch.int64)
    counts = torch.bincount(top, minlength=256).to(torch.float64)
    expected = values.numel() / 256.0
    return float(((counts - expected) ** 2 / expected).sum())


def two_sample_chi_square(first: torch.Tensor, second: torch.Tensor) -> float:
    """Chi-square homogeneity statistic of the top bytes of two equal-size samples."""
    a = torch.bincount(((first.flatten() >> 56) & 0xFF), minlength=256).to(torch.float64)
    b = torch.bincount(((second.flatten() >> 56) & 0xFF), minlength=256).to(torch.float64)
    total = a + b
    keep = total > 0
    return float(((a - b)[keep] ** 2 / total[keep]).sum())


def worst_bit_z(values: torch.Tensor) -> float:
    """Largest |z-score| over the 64 bit positions of the fraction of ones."""
    flat = values.flatten().contiguous()
    n = flat.numel()
    raw = flat.view(torch.uint8).view(n, 8)  # byte order does not matter for the max
    counts = torch.stack([((raw >> bit) & 1).sum(0, dtype=torch.int64) for bit in range(8)])
    return float(((counts.double() - n / 2) / math.sqrt(n / 4)).abs().max())


def looks_uniform(values: torch.Tensor) -> bool:
    """Top byte passes chi-square and every bit is balanced (both at p ~ 1e-6)."""
    return (
        top_byte_chi_square(values) < chi_square_critical(255)
        and worst_bit_z(values) < Z_CRITICAL + 1.0
    )
