"""Encrypted training on real shares: 2 (and 3) parties and a crypto provider as node processes over TLS.

The same model runs twice, on shares (``node.encrypt``) and in plaintext
(``nn.capture``, the same graph and layers): outputs, gradients and the
weights after an SGD step agree within fixed-point error (16 fractional
bits).  A data owner's private data enters with ``ptr.share`` and the
weights trained on it cannot be decrypted by the user who trained them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import node
from node.client.mpc import nn
from node.client.mpc.autograd import Variable
from node.client.mpc.optim import SGD
from protocol.errors import PermissionDenied
from tests.node.client.mpc.test_autograd import ARITHMETIC
from tests.support import NodeProcess, admit, start_node

ROUTE = "a2b"  # comparisons by arithmetic-to-binary conversion (any number of parties); fss for 2 below
TOL = 2e-3  # a few ulps (2^-16) per op, accumulated over a small network's forward and backward


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    tmp: Path = tmp_path_factory.mktemp("encrypted-model")
    charlie = start_node(tmp, "charlie")
    trust = ("--trust-crypto-provider", charlie.fingerprint)
    started = {"charlie": charlie, **{name: start_node(tmp, name, *trust) for name in ("bob", "alice", "dave")}}
    yield started
    for proc in started.values():
        proc.stop()
    for proc in started.values():
        assert "Traceback" not in proc.stderr(), proc.stderr()


@pytest.fixture(scope="module")
def nodes(procs: dict[str, NodeProcess]) -> Iterator[dict[str, node.RemoteNode]]:
    handles = {name: node.connect(p.url, cafile=p.cafile) for name, p in procs.items()}
    yield handles
    for handle in handles.values():
        handle.close()


@pytest.mark.parametrize("name", sorted(ARITHMETIC))
def test_arithmetic_gradients_on_shares(nodes: dict[str, node.RemoteNode], name: str) -> None:
    """Each tape op on shared leaves: the value and gradients of the plaintext run, within fixed-point error."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    fn, shapes = ARITHMETIC[name]
    torch.manual_seed(7)
    plain = [Variable(torch.randn(*shape), requires_grad=True) for shape in shapes]
    shared = [Variable(node.share(v.get(), bob, alice, crypto_provider=charlie), requires_grad=True) for v in plain]
    out, ref = fn(*shared), fn(*plain)
    _close(out, ref.get())
    upstream = torch.randn(ref.shape)
    out.backward(node.share(upstream, bob, alice, crypto_provider=charlie)), ref.backward(upstream)
    for s, p in zip(shared, plain):
        assert isinstance(s.grad, node.SharedTensor)
        _close(s.grad, p.grad)


def _mlp() -> tnn.Module:
    torch.manual_seed(3)
    return tnn.Sequential(tnn.Linear(6, 5), tnn.ReLU(), tnn.Linear(5, 3))


def _close(shared: Variable | node.SharedTensor | torch.Tensor | None, plain: object) -> None:
    assert isinstance(plain, torch.Tensor) and shared is not None
    value = shared.get()
    assert value.shape == plain.shape
    assert (value.double() - plain.double()).abs().max().item() < TOL


@pytest.mark.parametrize(("n", "route"), [(2, "fss"), (2, "a2b"), (3, "a2b")])
def test_training_step_on_shares_matches_plaintext(nodes: dict[str, node.RemoteNode], n: int, route: str) -> None:
    """Forward, backward and an SGD step of an MLP with ReLU, on shared inputs and shared weights."""
    parties, charlie = (nodes["bob"], nodes["alice"], nodes["dave"])[:n], nodes["charlie"]
    model = _mlp()
    x = torch.randn(4, 6)
    target = F.one_hot(torch.tensor([0, 2, 1, 2]), 3).float()
    enc, twin = node.encrypt(model, *parties, crypto_provider=charlie, comparison=route), nn.capture(model)
    assert enc.is_shared and not twin.is_shared
    xs = node.share(x, *parties, crypto_provider=charlie, comparison=route)
    ts = node.share(target, *parties, crypto_provider=charlie, comparison=route)

    out, ref = enc(xs), twin(x)
    _close(out, ref.get())
    loss, ref_loss = nn.mse_loss(out, ts), nn.mse_loss(ref, target)
    loss.backward(), ref_loss.backward()
    twin_grads = dict(twin.named_parameters())
    for name, p in enc.named_parameters():
        assert isinstance(p.grad, node.SharedTensor), name
        _close(p.grad, twin_grads[name].grad)
    SGD(enc.parameters(), lr=0.5).step(), SGD(twin.parameters(), lr=0.5).step()
    stepped, expected = enc.decrypt(), twin.decrypt()
    for name, tensor in stepped.state_dict().items():
        assert (tensor - expected.state_dict()[name]).abs().max().item() < TOL, name
    _close(loss, ref_loss.get())


def test_cnn_training_step_on_shares_matches_plaintext(nodes: dict[str, node.RemoteNode]) -> None:
    """Conv (stride 2, padding), batch norm (eval), ReLU, average pooling, linear: conv gradients by convolutions of shares."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    torch.manual_seed(5)
    model = tnn.Sequential(
        tnn.Conv2d(2, 3, 3, stride=2, padding=1), tnn.BatchNorm2d(3), tnn.ReLU(), tnn.Conv2d(3, 2, 2),
        tnn.AvgPool2d(2, 1), tnn.Flatten(), tnn.Linear(2, 3),
    ).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5), model[1].running_var.uniform_(0.5, 2)
    image, target = torch.randn(2, 2, 6, 6), torch.randn(2, 3)
    enc, twin = node.encrypt(model, bob, alice, crypto_provider=charlie, comparison=ROUTE), nn.capture(model)
    loss = nn.mse_loss(enc(node.share(image, bob, alice, crypto_provider=charlie, comparison=ROUTE)), target)
    ref = nn.mse_loss(twin(image), target)
    loss.backward(), ref.backward()
    twin_grads = dict(twin.named_parameters())
    for name, p in enc.named_parameters():
        _close(p.grad, twin_grads[name].grad)


class _PoolNet(tnn.Module):
    """Conv, max-pool, then a head with sigmoid and softmax (functional forward, traced by torch.fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = tnn.Conv2d(1, 2, 3, padding=1), tnn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        x = torch.sigmoid(self.fc(torch.flatten(x, 1)))
        return F.log_softmax(F.softmax(x * 4, dim=1) * 3, dim=1)


def test_max_pool_and_approximations_train_on_shares(nodes: dict[str, node.RemoteNode]) -> None:
    """Max-pool (one-hot argmax kept), sigmoid, softmax, log-softmax and cross-entropy: within the approximations' error."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    torch.manual_seed(6)
    model = _PoolNet()
    image, labels = torch.randn(3, 1, 4, 4), torch.tensor([2, 0, 1])
    enc, twin = node.encrypt(model, bob, alice, crypto_provider=charlie, comparison=ROUTE), nn.capture(model)
    out = enc(node.share(image, bob, alice, crypto_provider=charlie, comparison=ROUTE))
    ref = twin(image)
    _close(out, ref.get())
    loss, ref_loss = nn.cross_entropy(out, labels), nn.cross_entropy(ref, labels)
    loss.backward(), ref_loss.backward()
    twin_grads = dict(twin.named_parameters())
    for name, p in enc.named_parameters():
        _close(p.grad, twin_grads[name].grad)
    _close(loss, ref_loss.get())


def test_inference_with_plaintext_or_shared_weights(nodes: dict[str, node.RemoteNode]) -> None:
    """Shared weights on a plaintext input, public weights on a shared input: both give the plaintext output."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    torch.manual_seed(4)
    model = tnn.Sequential(
        tnn.Conv2d(1, 2, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2), tnn.AvgPool2d(1), tnn.Flatten(),
        tnn.Linear(8, 3),
    )
    image = torch.randn(2, 1, 4, 4)
    expected = model(image).detach()
    shared_weights = node.encrypt(model, bob, alice, crypto_provider=charlie, comparison=ROUTE)
    _close(shared_weights(image), expected)
    predicted = shared_weights.predict(image)
    assert isinstance(predicted, node.SharedTensor)
    _close(predicted, expected)
    public_weights = nn.capture(model)
    _close(public_weights.predict(node.share(image, bob, alice, crypto_provider=charlie, comparison=ROUTE)), expected)


def test_weights_trained_on_private_data_are_not_decrypted(
    procs: dict[str, NodeProcess], nodes: dict[str, node.RemoteNode]
) -> None:
    """A data owner's private tensor is shared from its node; the weights trained on it stay restricted."""
    owner_alice = nodes["alice"]
    data = owner_alice.send(torch.randn(4, 6), private=True)
    owner_alice.sync()
    trainer = {
        name: node.connect(procs[name].url, cafile=procs[name].cafile, token=admit(procs[name].state_dir, "trainer"))
        for name in ("alice", "bob", "charlie")
    }
    try:
        bob, alice, charlie = trainer["bob"], trainer["alice"], trainer["charlie"]
        enc = node.encrypt(_mlp(), bob, alice, crypto_provider=charlie, comparison=ROUTE)
        assert isinstance(enc.decrypt(), tnn.Sequential)  # the trainer's own weights: readable
        xs = alice.pointer(data.object_id).share(bob, alice, crypto_provider=charlie, comparison=ROUTE)
        with pytest.raises(PermissionDenied):
            xs.get()
        target = node.share(torch.zeros(4, 3), bob, alice, crypto_provider=charlie, comparison=ROUTE)
        loss = nn.mse_loss(enc(xs), target)
        loss.backward()
        SGD(enc.parameters(), lr=0.1).step()
        with pytest.raises(PermissionDenied):
            enc.decrypt()
    finally:
        for handle in trainer.values():
            handle.close()
