"""DP-SGD at the owner: clipping bounds each row, noise has its scale, the row-recovery attack fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from node.fl.datasets import Dataset, make_dataset
from node.fl.errors import DpUnsupportedLayer, IncompatibleData, PrivacyConfigError
from node.fl.hyperparameters import Hyperparameters, LossName
from node.fl.local import prepare_data, train_locally
from node.fl.privacy import DpSgd, dp_schedule, train_privately
from node.fl.spec import ModelSpec, State, build_model, model_to_spec

Data = Tuple[torch.Tensor, torch.Tensor]
ROOT = Path(__file__).resolve().parents[3]
NO_NOISE = 1e-12
"""A noise multiplier whose noise is far below float32 resolution: clipping alone."""


@pytest.fixture(scope="module")
def cancer(breast_cancer: Data) -> Dataset:
    return make_dataset("cancer", *breast_cancer, heldout_fraction=0.2, split_seed=1)


def _mlp(inputs: int = 30, hidden: int = 16, seed: int = 0) -> Tuple[ModelSpec, State]:
    torch.manual_seed(seed)
    return model_to_spec(nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 2)))


def _delta(before: State, after: State) -> torch.Tensor:
    return torch.cat([(after[k].double() - before[k].double()).flatten() for k in before])


# -- the schedule and the setting ---------------------------------------------


def test_schedule_follows_opacus_epochs() -> None:
    """An epoch is ceil(N / batch) steps at rate 1/that; a batch of at least N is full-batch."""
    assert dp_schedule(Hyperparameters(lr=0.1, batch_size=32, local_epochs=3), 455) == (1 / 15, 45)
    assert dp_schedule(Hyperparameters(lr=0.1, batch_size=455), 455) == (1.0, 1)
    assert dp_schedule(Hyperparameters(lr=0.1, batch_size=10_000, local_epochs=2), 455) == (1.0, 2)


@pytest.mark.parametrize("args", [(0.0, 1.0, 1e-5), (1.0, 0.0, 1e-5), (1.0, 1.0, 0.0), (1.0, 1.0, 1.0),
                                  (float("nan"), 1.0, 1e-5), (1.0, float("inf"), 1e-5), (True, 1.0, 1e-5)])
def test_dp_setting_out_of_range_is_refused(args: Tuple[float, float, float]) -> None:
    """sigma and C must be finite and positive, delta in (0, 1)."""
    with pytest.raises(PrivacyConfigError):
        DpSgd(*args)


# -- clipping and noise -------------------------------------------------------


def _per_row_reference(spec: ModelSpec, state: State, dataset: Dataset, loss: LossName, lr: float,
                       clip: float) -> State:
    """One full-batch SGD step on the mean of per-row gradients, each clipped to ``clip`` (plain autograd)."""
    model = build_model(spec, state)
    inputs, targets = prepare_data(model, dataset.features, dataset.labels, loss, "reference")
    per_row: Dict[LossName, Callable[..., torch.Tensor]] = {
        LossName.CROSS_ENTROPY: F.cross_entropy,
        LossName.BCE_WITH_LOGITS: F.binary_cross_entropy_with_logits,
        LossName.MSE: F.mse_loss,
    }
    params = dict(model.named_parameters())
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    for row in range(inputs.shape[0]):
        model.zero_grad()
        per_row[loss](model(inputs[row : row + 1]), targets[row : row + 1]).backward()  # type: ignore[no-untyped-call]
        grads = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in params.items()}
        norm = torch.cat([g.flatten() for g in grads.values()]).norm()
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for key in total:
            total[key] += factor * grads[key]
    rows = inputs.shape[0]
    return {k: state[k] - lr * total[k] / rows if k in total else state[k] for k in state}


def _int_features(rows: int, width: int, high: int) -> torch.Tensor:
    return torch.randint(0, high, (rows, width)).to(torch.float32)


LAYER_CASES: Dict[str, Tuple[Callable[[], nn.Sequential], Callable[[int], torch.Tensor], LossName]] = {
    "linear": (lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)),
               lambda n: torch.randn(n, 5), LossName.CROSS_ENTROPY),
    "linear_3d": (lambda: nn.Sequential(nn.Linear(4, 2), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(6, 3)),
                  lambda n: torch.randn(n, 3, 4), LossName.CROSS_ENTROPY),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                                     nn.Linear(12, 2)),
               lambda n: torch.randn(n, 2, 8), LossName.CROSS_ENTROPY),
    "conv2d_groups_same": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, groups=2, padding="same"), nn.AvgPool2d(2),
                                                 nn.Flatten(), nn.Linear(36, 1)),
                           lambda n: torch.randn(n, 2, 6, 6), LossName.BCE_WITH_LOGITS),
    "conv1d_reflect": (lambda: nn.Sequential(nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                                             nn.Linear(16, 2)),
                       lambda n: torch.randn(n, 2, 8), LossName.MSE),
    "layer_norm": (lambda: nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.GELU(), nn.Linear(4, 3)),
                   lambda n: torch.randn(n, 5), LossName.CROSS_ENTROPY),
    "layer_norm_no_bias": (lambda: nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4, bias=False), nn.Linear(4, 2)),
                           lambda n: torch.randn(n, 5), LossName.MSE),
    "embedding_padding": (lambda: nn.Sequential(nn.Embedding(6, 3, padding_idx=0), nn.Flatten(), nn.Linear(12, 2)),
                          lambda n: _int_features(n, 4, 6), LossName.CROSS_ENTROPY),
}


def _labels(loss: LossName, rows: int, outputs: int) -> torch.Tensor:
    if loss is LossName.CROSS_ENTROPY:
        return torch.arange(rows) % outputs
    if loss is LossName.BCE_WITH_LOGITS:
        return (torch.arange(rows) % 2).to(torch.float32)
    return torch.randn(rows, outputs) if outputs > 1 else torch.randn(rows)


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_update_is_the_mean_of_clipped_per_row_gradients(case: str) -> None:
    """Without noise, one full-batch step equals the per-row autograd reference, each row clipped to C."""
    build, features, loss = LAYER_CASES[case]
    torch.manual_seed(3)
    module = build()
    spec, state = model_to_spec(module)
    rows = 9
    x = features(rows)
    last = module[-1]
    assert isinstance(last, nn.Linear)
    outputs = last.out_features
    dataset = make_dataset("rows", x, _labels(loss, rows, outputs), heldout_fraction=0.0)
    hyper = Hyperparameters(lr=0.5, batch_size=rows, loss=loss)
    clip = 0.05
    result = train_privately(spec, state, dataset, hyper, DpSgd(NO_NOISE, clip, 1e-5), seed=0)
    expected = _per_row_reference(spec, state, dataset, loss, hyper.lr, clip)
    moved = _delta(state, expected).abs().max()
    assert moved > 1e-3
    for key in state:
        torch.testing.assert_close(result.state[key], expected[key], atol=2e-6, rtol=1e-5)


def test_one_row_moves_the_update_by_at_most_lr_c_over_batch(cancer: Dataset) -> None:
    """Replacing one row by an outlier moves the noiseless update by at most 2*lr*C/N; without DP, far more."""
    spec, state = _mlp()
    rows = cancer.train_samples
    features, labels = cancer.features.clone(), cancer.labels.clone()
    features[0], labels[0] = 1000.0 * features[0].sign(), 1 - labels[0]
    outlier = make_dataset("outlier", features, labels, heldout_fraction=0.0)
    honest = make_dataset("honest", cancer.features, cancer.labels, heldout_fraction=0.0)
    hyper = Hyperparameters(lr=1.0, batch_size=rows)
    clip = 1.0
    dp = DpSgd(NO_NOISE, clip, 1e-5)
    private = _delta(train_privately(spec, state, honest, hyper, dp, seed=0).state,
                     train_privately(spec, state, outlier, hyper, dp, seed=0).state)
    plain = _delta(train_locally(spec, state, honest, hyper).state, train_locally(spec, state, outlier, hyper).state)
    bound = 2 * hyper.lr * clip / rows
    assert float(private.norm()) <= bound * (1 + 1e-4)
    assert float(private.norm()) > bound / 4  # the outlier's clipped gradient is really there
    assert float(plain.norm()) > 20 * bound


def test_noise_has_standard_deviation_sigma_c_over_batch(cancer: Dataset) -> None:
    """Same key, sigma vs ~0: the difference of the updates is N(0, (lr*sigma*C/N)^2) per coordinate."""
    spec, state = _mlp(hidden=200)
    hyper = Hyperparameters(lr=0.5, batch_size=cancer.train_samples)
    sigma, clip = 1.3, 0.7
    noisy = train_privately(spec, state, cancer, hyper, DpSgd(sigma, clip, 1e-5), seed=5)
    quiet = train_privately(spec, state, cancer, hyper, DpSgd(NO_NOISE, clip, 1e-5), seed=5)
    scale = hyper.lr * sigma * clip / cancer.train_samples
    noise = _delta(quiet.state, noisy.state) / scale
    assert noise.numel() > 6000
    assert abs(float(noise.mean())) < 0.05
    assert abs(float(noise.std()) - 1.0) < 0.04
    kurtosis = float((noise - noise.mean()).pow(4).mean() / noise.var().pow(2))
    assert abs(kurtosis - 3.0) < 0.3


def test_seed_reproduces_and_fresh_keys_differ(cancer: Dataset) -> None:
    """A test seed gives the same state twice; without one, every run draws new noise and batches."""
    spec, state = _mlp()
    hyper = Hyperparameters(lr=0.1, batch_size=64)
    dp = DpSgd(1.0, 1.0, 1e-5)
    first, second = (train_privately(spec, state, cancer, hyper, dp, seed=7) for _ in range(2))
    assert all(torch.equal(first.state[k], second.state[k]) for k in state)
    fresh = [train_privately(spec, state, cancer, hyper, dp) for _ in range(2)]
    assert not torch.equal(fresh[0].state["0.weight"], fresh[1].state["0.weight"])
    assert not torch.equal(fresh[0].state["0.weight"], first.state["0.weight"])


def test_private_training_learns_and_withholds_metrics_by_default(cancer: Dataset) -> None:
    """sigma 1, C 1 still learns breast cancer; loss and held-out metrics come back only on request."""
    spec, state = _mlp()
    hyper = Hyperparameters(lr=0.1, local_epochs=5, batch_size=32, momentum=0.9)
    dp = DpSgd(1.0, 1.0, 1e-5)
    rng = torch.random.get_rng_state()
    withheld = train_privately(spec, state, cancer, hyper, dp, seed=1)
    shown = train_privately(spec, state, cancer, hyper, dp, seed=1, metrics=True)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert withheld.heldout is None and withheld.train_loss == 0.0
    assert withheld.samples == cancer.train_samples
    assert all(torch.equal(withheld.state[k], shown.state[k]) for k in state)
    assert shown.heldout is not None and shown.heldout.accuracy is not None
    assert shown.heldout.accuracy > 0.85 and shown.train_loss > 0


@pytest.mark.parametrize("optimizer", [{"momentum": 0.9}, {"optimizer": "adam", "weight_decay": 0.01}])
def test_empty_poisson_batches_still_step(optimizer: Dict[str, object]) -> None:
    """Three rows at rate 1/3 leave some batches empty; those steps are noise only and stay finite."""
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 0])
    dataset = make_dataset("tiny", x, y, heldout_fraction=0.0)
    spec, state = _mlp(inputs=4, hidden=3)
    hyper = Hyperparameters(lr=0.01, batch_size=1, local_epochs=10, **optimizer)  # type: ignore[arg-type]
    result = train_privately(spec, state, dataset, hyper, DpSgd(1.0, 1.0, 1e-5), seed=2)
    assert all(bool(torch.isfinite(t).all()) for t in result.state.values())


def test_batch_norm_is_refused_naming_the_layer(cancer: Dataset) -> None:
    """BatchNorm couples the rows of a batch: a typed error names its index and class."""
    spec, state = model_to_spec(nn.Sequential(nn.Linear(30, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)))
    with pytest.raises(DpUnsupportedLayer, match=r"layer 1 \(BatchNorm1d\)") as caught:
        train_privately(spec, state, cancer, Hyperparameters(lr=0.1), DpSgd(1.0, 1.0, 1e-5))
    assert caught.value.details["index"] == 1 and caught.value.code is not None


def test_a_row_whose_gradient_overflows_counts_for_nothing() -> None:
    """An overflowing row would turn the whole update into inf/NaN (a bit about the data); DP-SGD drops it."""
    x, y = torch.randn(8, 3), torch.randn(8)
    x[5] = 1e38
    dataset = make_dataset("overflow", x, y, heldout_fraction=0.0)
    first = nn.Linear(3, 1)
    with torch.no_grad():
        first.weight.fill_(1.0)
    spec, state = model_to_spec(nn.Sequential(first))
    hyper = Hyperparameters(lr=0.1, batch_size=8, loss=LossName.MSE)
    plain = train_locally(spec, state, dataset, hyper)
    assert not all(bool(torch.isfinite(t).all()) for t in plain.state.values())
    private = train_privately(spec, state, dataset, hyper, DpSgd(1.0, 1.0, 1e-5), seed=4, metrics=True)
    assert all(bool(torch.isfinite(t).all()) for t in private.state.values())
    assert torch.isfinite(torch.tensor(private.train_loss))


def test_rows_out_of_the_models_range_are_left_out_not_reported() -> None:
    """An Embedding index or a class label beyond the model fails plain training; DP-SGD trains without the row."""
    features = torch.tensor([[0.0, 1.0], [2.0, 3.0], [1.0, 1.0], [3.0, 0.0], [9.0, 2.0], [1.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 0, 1, 2])
    dataset = make_dataset("indices", features, labels, heldout_fraction=0.0)
    torch.manual_seed(0)
    spec, state = model_to_spec(nn.Sequential(nn.Embedding(4, 2), nn.Flatten(), nn.Linear(4, 2)))
    hyper = Hyperparameters(lr=0.5, batch_size=6)
    with pytest.raises(IncompatibleData):
        train_locally(spec, state, dataset, hyper)
    dp = DpSgd(NO_NOISE, 0.05, 1e-5)
    private = train_privately(spec, state, dataset, hyper, dp, seed=0)
    usable = make_dataset("usable", features[:4], labels[:4], heldout_fraction=0.0)
    reference = _per_row_reference(spec, state, usable, LossName.CROSS_ENTROPY, hyper.lr * 4 / 6, 0.05)
    for key in state:
        torch.testing.assert_close(private.state[key], reference[key], atol=2e-6, rtol=1e-5)


# -- the reconstruction attack of issue 11 ------------------------------------


def _victims() -> Data:
    """24 rows whose feature 0 values lie 0.25 apart (shuffled): one per threshold bin."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 6, generator=generator)
    first = -2.9 + 0.25 * torch.arange(24, dtype=torch.float32) + 0.1 * (torch.rand(24, generator=generator) - 0.5)
    x[:, 0] = first[torch.randperm(24, generator=generator)]
    return x, torch.randint(0, 2, (24,), generator=generator).to(torch.float32)


def _binning_model(features: int) -> Tuple[ModelSpec, State]:
    """A neuron per threshold on feature 0 (weight e_0, bias -t), summed by a constant output layer."""
    thresholds = torch.arange(-3.0, 3.2, 0.05)
    first, last = nn.Linear(features, len(thresholds)), nn.Linear(len(thresholds), 1)
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, 0] = 1.0
        first.bias.copy_(-thresholds)
        last.weight.fill_(0.01)
        last.bias.fill_(5.0)  # keeps every row's residual, hence its gradient, away from zero
    return model_to_spec(nn.Sequential(first, nn.ReLU(), last))


def _recovered(before: State, after: State, lr: float) -> torch.Tensor:
    """Candidate rows: the gradient difference of neighbouring neurons, weight over bias."""
    weight = (before["0.weight"].double() - after["0.weight"].double()) / lr
    bias = (before["0.bias"].double() - after["0.bias"].double()) / lr
    d_weight, d_bias = weight[:-1] - weight[1:], bias[:-1] - bias[1:]
    return d_weight / d_bias[:, None]


def _recovery_error(rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """For each true row, the max-norm distance to the closest candidate (the attacker's best guess)."""
    return (rows.double()[:, None, :] - candidates[None]).abs().amax(-1).min(1).values


def test_reconstruction_attack_recovers_rows_without_dp_and_fails_with_dp() -> None:
    """One lr-1 full-batch step gives every row back within 2e-3; under DP-SGD (sigma 1, C 1) no row within 0.1."""
    x, y = _victims()
    dataset = make_dataset("victims", x, y, heldout_fraction=0.0)
    spec, state = _binning_model(x.shape[1])
    hyper = Hyperparameters(lr=1.0, batch_size=len(x), loss=LossName.MSE)
    plain = train_locally(spec, state, dataset, hyper)
    candidates = _recovered(state, plain.state, hyper.lr)
    real = candidates[torch.isfinite(candidates).all(1)]
    assert float(_recovery_error(x, real).max()) < 2e-3
    private = train_privately(spec, state, dataset, hyper, DpSgd(1.0, 1.0, 1e-5), seed=11)
    error = _recovery_error(x, _recovered(state, private.state, hyper.lr))
    assert float(error.min()) > 0.1


def test_private_training_of_an_mlp_does_not_import_dynamo() -> None:
    """Opacus' hooks path, and plain training after Opacus is loaded, keep torch._dynamo (about 1 s) out."""
    code = (
        "import sys, torch\n"
        "from torch import nn\n"
        "from node.fl import DpSgd, Hyperparameters, make_dataset, model_to_spec, train_locally, train_privately\n"
        "spec, state = model_to_spec(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))\n"
        "data = make_dataset('d', torch.randn(8, 4), torch.arange(8) % 2, heldout_fraction=0.0)\n"
        "train_privately(spec, state, data, Hyperparameters(lr=0.1), DpSgd(1.0, 1.0, 1e-5))\n"
        "train_locally(spec, state, data, Hyperparameters(lr=0.1, optimizer='adam'))\n"
        "print('opacus' in sys.modules, 'torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True False"
