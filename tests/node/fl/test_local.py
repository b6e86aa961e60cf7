"""Local training: it learns, it is reproducible, it refuses models that do not fit."""

from __future__ import annotations

from typing import Tuple

import pytest
import torch
from torch import nn

from node.fl.datasets import Dataset, make_dataset
from node.fl.errors import IncompatibleData
from node.fl.hyperparameters import Hyperparameters, LossName, OptimizerName
from node.fl.local import GeneratorDropout, batch_bounds, evaluate_heldout, train_locally
from node.fl.spec import ModelSpec, State, model_to_spec

Data = Tuple[torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def cancer(breast_cancer: Data) -> Dataset:
    return make_dataset("cancer", *breast_cancer, heldout_fraction=0.2, split_seed=1)


def _mlp(seed: int = 0, dropout: float = 0.0) -> Tuple[ModelSpec, State]:
    torch.manual_seed(seed)
    return model_to_spec(nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2)))


def test_training_reduces_heldout_loss(cancer: Dataset) -> None:
    """A few local epochs on breast cancer lower the held-out loss and reach > 90% accuracy."""
    spec, state = _mlp()
    before = evaluate_heldout(spec, state, cancer, LossName.CROSS_ENTROPY)
    result = train_locally(spec, state, cancer, Hyperparameters(lr=0.05, local_epochs=5, momentum=0.9))
    assert before is not None and result.heldout is not None
    assert result.heldout.loss < before.loss / 2
    assert result.heldout.accuracy is not None and result.heldout.accuracy > 0.9
    assert result.samples == cancer.train_samples and result.heldout.samples == cancer.heldout_samples
    assert 0 < result.train_loss < before.loss


def test_same_seed_same_state_and_global_rng_untouched(cancer: Dataset) -> None:
    """Same seed -> identical state (dropout included); torch's global RNG is not used."""
    spec, state = _mlp(dropout=0.3)
    hyper = Hyperparameters(lr=0.05, local_epochs=2, seed=11)
    rng = torch.random.get_rng_state()
    first = train_locally(spec, state, cancer, hyper)
    torch.manual_seed(123)
    second = train_locally(spec, state, cancer, hyper)
    torch.random.set_rng_state(rng)
    third = train_locally(spec, state, cancer, Hyperparameters(lr=0.05, local_epochs=2, seed=12))
    assert all(torch.equal(first.state[k], second.state[k]) for k in first.state)
    assert first.train_loss == second.train_loss
    assert not torch.equal(first.state["0.weight"], third.state["0.weight"])
    assert torch.equal(rng, torch.random.get_rng_state())


def test_input_state_is_not_modified(cancer: Dataset) -> None:
    """Training works on a copy of the state it was given."""
    spec, state = _mlp()
    kept = {k: v.clone() for k, v in state.items()}
    train_locally(spec, state, cancer, Hyperparameters(lr=0.1))
    assert all(torch.equal(kept[k], state[k]) for k in state)


def test_generator_dropout_matches_dropout_statistics() -> None:
    """The generator-driven dropout zeroes about p of the inputs and rescales the rest."""
    layer = GeneratorDropout(0.25, torch.Generator().manual_seed(0))
    out = layer(torch.ones(100_000))
    assert abs(float((out == 0).float().mean()) - 0.25) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.75))
    assert torch.equal(layer.eval()(torch.ones(3)), torch.ones(3))


def test_batch_bounds_merge_a_trailing_single_sample() -> None:
    """Batches are contiguous; a last batch of one sample joins the one before."""
    assert batch_bounds(5, 2) == [(0, 2), (2, 5)]
    assert batch_bounds(6, 2) == [(0, 2), (2, 4), (4, 6)]
    assert batch_bounds(1, 4) == [(0, 1)]


def test_batch_norm_trains_when_a_single_sample_is_left_over(cancer: Dataset) -> None:
    """With BatchNorm, a remainder of one sample does not break training."""
    torch.manual_seed(0)
    spec, state = model_to_spec(nn.Sequential(nn.Linear(30, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)))
    batch = cancer.train_samples - 1
    result = train_locally(spec, state, cancer, Hyperparameters(lr=0.05, batch_size=batch))
    assert int(result.state["1.num_batches_tracked"]) == 1


def test_model_whose_input_does_not_fit_is_refused(cancer: Dataset) -> None:
    """A model expecting 20 features on 30-feature data is refused before training."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(20, 2)))
    with pytest.raises(IncompatibleData, match=r"samples of shape \(30,\)") as caught:
        train_locally(spec, state, cancer, Hyperparameters(lr=0.1))
    assert caught.value.details["dataset"] == "cancer"


def test_too_few_classes_for_the_labels_is_refused(cancer: Dataset) -> None:
    """cross_entropy with one output for labels 0/1 is refused, naming the label range."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(30, 1)))
    with pytest.raises(IncompatibleData, match="1 classes"):
        train_locally(spec, state, cancer, Hyperparameters(lr=0.1))


def test_bce_output_size_must_match_labels(cancer: Dataset) -> None:
    """bce_with_logits with two outputs per one label is refused."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(30, 2)))
    with pytest.raises(IncompatibleData, match="label values per sample"):
        train_locally(spec, state, cancer, Hyperparameters(lr=0.1, loss=LossName.BCE_WITH_LOGITS))


def test_bce_with_logits_reports_accuracy(cancer: Dataset) -> None:
    """bce_with_logits trains a one-logit model and reports accuracy from logit > 0."""
    torch.manual_seed(0)
    spec, state = model_to_spec(nn.Sequential(nn.Linear(30, 1)))
    hyper = Hyperparameters(lr=0.01, local_epochs=3, loss=LossName.BCE_WITH_LOGITS, optimizer=OptimizerName.ADAM)
    result = train_locally(spec, state, cancer, hyper)
    assert result.heldout is not None and result.heldout.accuracy is not None
    assert result.heldout.accuracy > 0.9


def test_mse_regression_has_no_accuracy() -> None:
    """mse trains on float targets and reports a loss without accuracy."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 3, generator=generator)
    labels = features @ torch.tensor([1.0, -2.0, 0.5]) + 0.1
    data = make_dataset("line", features, labels)
    torch.manual_seed(0)
    spec, state = model_to_spec(nn.Sequential(nn.Linear(3, 1)))
    before = evaluate_heldout(spec, state, data, LossName.MSE)
    result = train_locally(spec, state, data, Hyperparameters(lr=0.05, local_epochs=10, loss=LossName.MSE))
    assert before is not None and result.heldout is not None
    assert result.heldout.accuracy is None and result.heldout.loss < before.loss / 10


def test_embedding_first_layer_takes_integer_features() -> None:
    """An Embedding first layer trains on integer-valued features (converted to indices)."""
    features = torch.randint(0, 5, (40, 3)).to(torch.float32)
    data = make_dataset("tokens", features, (features[:, 0] > 2).to(torch.int64))
    spec, state = model_to_spec(nn.Sequential(nn.Embedding(5, 4), nn.Flatten(), nn.Linear(12, 2)))
    result = train_locally(spec, state, data, Hyperparameters(lr=0.1))
    assert not torch.equal(result.state["0.weight"], state["0.weight"])
