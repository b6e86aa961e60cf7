"""Fixtures for the federated-learning core: small real datasets as tensors."""

from __future__ import annotations

from typing import Iterator, Tuple

import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits  # type: ignore[import-untyped]


def _standardized(data: object, target: object) -> Tuple[torch.Tensor, torch.Tensor]:
    features = torch.tensor(data, dtype=torch.float32)
    features = (features - features.mean(0)) / features.std(0).clamp_min(1e-6)
    return features, torch.tensor(target, dtype=torch.int64)


@pytest.fixture(scope="session")
def breast_cancer() -> Tuple[torch.Tensor, torch.Tensor]:
    """Wisconsin breast cancer: 569 x 30 standardized features, labels 0/1."""
    bunch = load_breast_cancer()
    return _standardized(bunch.data, bunch.target)


@pytest.fixture(scope="session")
def digits() -> Tuple[torch.Tensor, torch.Tensor]:
    """sklearn digits: 1797 x 64 standardized features, labels 0-9."""
    bunch = load_digits()
    return _standardized(bunch.data, bunch.target)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a loaded machine the
    thread pool's barriers make each step 10x slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
