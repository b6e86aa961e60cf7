"""Pure shape rules against torch's own."""

from __future__ import annotations

import pytest
import torch

from node.mpc.shapes import reduced_shape

CASES = [
    ((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((3, 4), (0, 1)), ((3, 4), (-1, 0)), ((3, 4), ()),
    ((2, 3, 4), (0, 2)), ((2, 3, 4), -2), ((5,), 0), ((), 0), ((), -1), ((0, 3), 0), ((2, 1, 3), (1,)),
]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize(("shape", "dim"), CASES)
def test_reduced_shape_is_torchs(shape: tuple[int, ...], dim: int | tuple[int, ...], keepdim: bool) -> None:
    expected = torch.zeros(shape).sum(dim=dim, keepdim=keepdim).shape
    assert reduced_shape(shape, dim, keepdim) == tuple(expected)


@pytest.mark.parametrize(("shape", "dim"), [((3, 4), 2), ((3, 4), -3), ((3, 4), (0, 0)), ((3, 4), (1, -1)), ((), 1)])
def test_bad_dims_are_refused_like_torch(shape: tuple[int, ...], dim: int | tuple[int, ...]) -> None:
    with pytest.raises((IndexError, RuntimeError)):
        torch.zeros(shape).sum(dim=dim)
    with pytest.raises((IndexError, ValueError)):
        reduced_shape(shape, dim)
