"""Private models: a layer that mixes the rows of a batch is refused, by index and class."""

from __future__ import annotations

from typing import Tuple

import pytest
from torch import nn

from node.fl.errors import DpUnsupportedLayer, SpecError
from node.fl.private_model import check_private_model, disable_inplace, hooks_are_exact, padding_rows

REFUSED = [
    ("batch_norm", nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), 2, 1),
    ("batch_norm_2d", nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), 4, 1),
    ("softmax_over_batch", nn.Sequential(nn.Linear(4, 2), nn.Softmax(dim=0)), 2, 1),
    ("implicit_softmax_3d", nn.Sequential(nn.Conv1d(1, 2, 3), nn.LogSoftmax()), 3, 1),
    ("flatten_batch", nn.Sequential(nn.Flatten(0), nn.Linear(8, 2)), 2, 0),
    ("layer_norm_over_batch", nn.Sequential(nn.Linear(4, 4), nn.LayerNorm([6, 4])), 2, 1),
    ("conv_unbatched", nn.Sequential(nn.Conv1d(6, 2, 1)), 2, 0),
    ("conv2d_unbatched", nn.Sequential(nn.Flatten(2), nn.Conv2d(3, 2, 1)), 4, 1),
    ("linear_on_1d_batch", nn.Sequential(nn.Linear(6, 6)), 1, 0),
    ("embedding_max_norm", nn.Sequential(nn.Embedding(5, 2, max_norm=1.0)), 2, 0),
    ("embedding_freq", nn.Sequential(nn.Embedding(5, 2, scale_grad_by_freq=True)), 2, 0),
    ("unknown_layer", nn.Sequential(nn.Linear(4, 4), nn.Hardtanh()), 2, 1),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_row_mixing_layers_are_refused(case: Tuple[str, nn.Sequential, int, int]) -> None:
    """Each way a layer can couple rows (or change state outside the step) is refused at its index."""
    _, model, dims, index = case
    with pytest.raises(DpUnsupportedLayer) as caught:
        check_private_model(model, dims)
    assert caught.value.details["index"] == index
    assert caught.value.details["layer"] == type(model[index]).__name__


def test_row_wise_models_pass() -> None:
    """Linear, conv, pooling, LayerNorm over features, softmax over classes and embeddings keep rows apart."""
    check_private_model(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.1), nn.LayerNorm(3),
                                      nn.Softmax(dim=-1)), 2)
    check_private_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2),
                                      nn.LogSoftmax(dim=1)), 4)
    check_private_model(nn.Sequential(nn.Embedding(9, 3, padding_idx=0), nn.Flatten(), nn.Linear(12, 2)), 2)
    check_private_model(nn.Sequential(nn.Embedding(9, 3), nn.Linear(3, 2), nn.Flatten(1), nn.Linear(2, 1)), 1)
    check_private_model(nn.Sequential(nn.Flatten(0, 0), nn.Linear(4, 2)), 2)


def test_only_sequential_models() -> None:
    """A model that is not an nn.Sequential is refused (its layers' order is unknown)."""
    with pytest.raises(SpecError):
        check_private_model(nn.Linear(2, 2), 2)


def test_helpers_for_opacus_hooks() -> None:
    """Reflect padding and bias-less LayerNorm need functorch; padding rows and in-place flags are found."""
    assert hooks_are_exact(nn.Sequential(nn.Conv1d(1, 1, 3), nn.LayerNorm(2), nn.Embedding(3, 2, padding_idx=1)))
    assert not hooks_are_exact(nn.Sequential(nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular")))
    assert not hooks_are_exact(nn.Sequential(nn.LayerNorm(2, bias=False)))
    model = nn.Sequential(nn.Embedding(4, 2, padding_idx=-1), nn.ReLU(inplace=True))
    assert padding_rows(model) == {"0.weight": 3}
    disable_inplace(model)
    relu = model[1]
    assert isinstance(relu, nn.ReLU) and not relu.inplace
