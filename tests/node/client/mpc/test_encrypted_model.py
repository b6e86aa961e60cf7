"""Encrypted models captured with torch.fx, run in plaintext (public weights): torch's values and gradients.

``nn.capture`` runs the same graph, layers and optimizer as ``node.encrypt``
with public weights, so these tests need no network; unsupported layers
are refused before anything is shared (``encrypt`` is given parties that
would fail on first use).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

from node.client.mpc import nn
from node.client.mpc.optim import SGD


class FunctionalNet(tnn.Module):
    """A plain module whose forward calls functions (traced by torch.fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(1, 3, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Sequential(tnn.Conv2d(3, 4, 3, stride=2), tnn.AvgPool2d(1)),
        )
        self.fc = tnn.Linear(4, 5)
        self.scale = tnn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        x = x.view(x.size(0), -1)
        x = torch.sigmoid(self.fc(x)) * self.scale
        return F.log_softmax(x, dim=1)


def _mlp() -> tnn.Module:
    return tnn.Sequential(tnn.Flatten(), tnn.Linear(16, 8), tnn.ReLU(), tnn.Linear(8, 3))


def test_functional_model_matches_torch_through_training_steps() -> None:
    """Forward, backward and two SGD steps with momentum: the same weights as torch.optim.SGD."""
    torch.manual_seed(0)
    model = FunctionalNet().double()
    enc = nn.capture(model)
    x, y = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 0])
    ours, theirs = SGD(enc.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        out, ref = enc(x), model(x)
        assert torch.allclose(out.get(), ref.detach(), atol=1e-9)
        ours.zero_grad(), theirs.zero_grad()
        loss = -(out * F.one_hot(y, 5).double()).sum() * (1 / 6)
        loss.backward()
        F.nll_loss(ref, y).backward()
        grads = dict(model.named_parameters())
        for name, p in enc.named_parameters():
            assert torch.allclose(p.grad, grads[name].grad, atol=1e-9), name  # type: ignore[arg-type]
        ours.step(), theirs.step()
    decrypted = enc.decrypt()
    assert decrypted is not model
    for name, tensor in decrypted.state_dict().items():
        assert torch.allclose(tensor, model.state_dict()[name], atol=1e-9), name


def test_mlp_cross_entropy_training_matches_torch() -> None:
    torch.manual_seed(1)
    model = _mlp().double()
    enc = nn.capture(model)
    x, y = torch.randn(10, 4, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    ours, theirs = SGD(enc.parameters(), lr=0.5), torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = nn.cross_entropy(enc(x), y)
        ref = F.cross_entropy(model(x), y)
        assert torch.allclose(loss.get(), ref.detach(), atol=1e-9)
        ours.zero_grad(), theirs.zero_grad()
        loss.backward(), ref.backward()
        ours.step(), theirs.step()
    for name, tensor in enc.get().state_dict().items():
        assert torch.allclose(tensor, model.state_dict()[name], atol=1e-9), name


def test_batchnorm_in_eval_is_folded_and_decrypts_to_the_same_function() -> None:
    torch.manual_seed(2)
    model = tnn.Sequential(
        tnn.Conv2d(2, 3, 3), tnn.BatchNorm2d(3), tnn.ReLU(), tnn.Flatten(), tnn.Linear(12, 4), tnn.BatchNorm1d(4),
        tnn.Softmax(dim=1),
    ).double().eval()
    with torch.no_grad():
        for bn in (model[1], model[5]):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 1.5)
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    enc = nn.capture(model)
    assert torch.allclose(enc(x).get(), model(x), atol=1e-9)
    assert torch.allclose(enc.decrypt().eval()(x), model(x), atol=1e-9)
    names = [name for name, _ in enc.named_parameters()]
    assert "1.weight" in names and "5.bias" in names


def test_predict_runs_without_a_tape() -> None:
    torch.manual_seed(3)
    model = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(8, 2)).double()
    enc = nn.capture(model)
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    out = enc.predict(x)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    assert torch.allclose(out, model(x), atol=1e-9)
    assert all(p.grad is None for p in enc.parameters())


def test_frozen_parameters_get_no_gradient() -> None:
    model = _mlp().double()
    model[1].weight.requires_grad_(False)
    enc = nn.capture(model)
    assert "1.weight" not in dict(enc.named_parameters())
    nn.cross_entropy(enc(torch.randn(2, 4, 4, dtype=torch.float64)), torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in enc.parameters())


class _Unreachable:
    """A party handle that fails the test if encrypt() tries to use it."""

    id = "nobody"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"encrypt() used a party ({name}) before refusing the model")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (tnn.Sequential(tnn.Linear(2, 2), tnn.Sequential(tnn.ReLU(), tnn.LSTM(2, 2))),
         r"layer '1\.1' \(LSTM\) is not supported on shared tensors; supported: Linear, Conv2d"),
        (tnn.Sequential(tnn.Linear(2, 2), tnn.Tanh()), r"layer '1' \(Tanh\)"),
        (tnn.Sequential(tnn.MaxPool2d(2, ceil_mode=True)), r"layer '0' \(MaxPool2d\) with ceil_mode=True"),
        (tnn.Sequential(tnn.Conv2d(1, 1, 3, padding_mode="reflect")), r"padding_mode='reflect'"),
    ],
)
def test_unsupported_layers_are_named_before_anything_is_shared(model: tnn.Module, message: str) -> None:
    with pytest.raises(nn.UnsupportedLayer, match=message):
        nn.encrypt(model, _Unreachable(), _Unreachable(), crypto_provider=_Unreachable())  # type: ignore[arg-type]


class _DropoutNet(tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.drop = tnn.Linear(4, 3), tnn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.drop(self.fc(x)), 0.25, training=self.training)


def test_dropout_runs_in_eval_only() -> None:
    model = _DropoutNet().double()
    with pytest.raises(nn.UnsupportedLayer, match=r"layer 'drop' \(Dropout\) with training mode"):
        nn.capture(model)
    model.drop.eval()
    with pytest.raises(nn.UnsupportedLayer, match=r"operation 'dropout' \(dropout\) in training mode"):
        nn.capture(model)
    model.eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    assert torch.allclose(nn.capture(model).predict(x), model(x))


def test_unsupported_functions_and_untraceable_models_are_refused() -> None:
    class Exp(tnn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.exp(x)

    class Branchy(tnn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(nn.UnsupportedLayer, match=r"operation 'exp' \(.*exp\) is not supported"):
        nn.capture(Exp())
    with pytest.raises(nn.UnsupportedLayer, match="Branchy cannot be captured with torch.fx"):
        nn.capture(Branchy())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nn.capture(lambda x: x)  # type: ignore[arg-type]


def test_node_encrypt_is_exported() -> None:
    import node

    assert node.encrypt is nn.encrypt
