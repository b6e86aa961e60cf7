"""What local training hands back: the updated state, counts and metrics.

Owns :class:`Metrics` and :class:`LocalResult`, plain frozen data shared by
local training (which makes them) and aggregation (which averages them).
Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .spec import State

__all__ = ["Metrics", "PrivacyCharge", "LocalResult"]


@dataclass(frozen=True, slots=True)
class Metrics:
    """Mean loss (and accuracy, for classification losses) over ``samples`` samples."""

    loss: float
    accuracy: Optional[float]
    samples: int


@dataclass(frozen=True, slots=True)
class PrivacyCharge:
    """What one training charged to its dataset's DP budget (epsilon) and what is left."""

    epsilon: float
    remaining: float


@dataclass(frozen=True, slots=True, eq=False)
class LocalResult:
    """One owner's round: the full updated state, not a delta.

    ``samples`` is the number of training samples (the FedAvg weight);
    ``train_loss`` the sample-weighted mean minibatch loss over all local
    epochs; ``heldout`` the updated model's metrics on the owner's held-out
    split (``None`` when the owner keeps no held-out rows); ``privacy`` what
    the training charged to the dataset's DP budget (``None`` with DP off).
    """

    state: State
    samples: int
    train_loss: float
    heldout: Optional[Metrics]
    privacy: Optional[PrivacyCharge] = None
