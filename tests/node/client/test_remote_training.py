"""Remote training with pointers (issue 14, items 3 and 4), on real in-process nodes over TLS.

Two NodeServers (alice, bob) run in this process on a background event loop,
with the tests' network token (so they move objects to each other) and two
admitted users: the tests' user and ``trainer``.  Clients are ordinary
``node.connect`` handles over TLS; nothing of the transport, codec, store or
executor is replaced.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

import node
from node.client.ids import new_object_id
from node.server.runtime import NodeServer
from node.server.users import UserDirectory
from node.settings import NodeSettings
from peer.security.tokens import new_user_token, parse_user_token
from protocol.errors import BadRequest, PermissionDenied, UnsupportedOp
from protocol.ids import NodeId
from protocol.messages import CommandRequest
from protocol.values import PointerRef
from tests.support import NETWORK_TOKEN, ROOT, USER_TOKEN

TRAINER = new_user_token("trainer")
TOLERANCE = 1e-6


class Nodes:
    """alice and bob, started on an event loop in a thread of this process."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: dict[str, NodeServer] = {}
        for name in ("alice", "bob"):
            state = tmp_path / name
            UserDirectory(state).add(parse_user_token(USER_TOKEN))
            UserDirectory(state).add(TRAINER)
            settings = NodeSettings(node_id=NodeId(name), state_dir=state, port=0, network_token=NETWORK_TOKEN)
            server = NodeServer(settings)
            asyncio.run_coroutine_threadsafe(server.start(), self.loop).result(30)
            self.servers[name] = server
        self.clients: list[node.RemoteNode] = []

    def connect(self, name: str, token: str = USER_TOKEN) -> node.RemoteNode:
        server = self.servers[name]
        assert server.identity is not None
        client = node.connect(server.url, cafile=server.identity.cert_path, token=token)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers.values():
            asyncio.run_coroutine_threadsafe(server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    node.hook_torch()
    network = Nodes(tmp_path)
    yield network
    network.close()


def _datasets() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(14)
    data = torch.randn(8, 3, generator=generator)
    target = data @ torch.tensor([[0.5], [-1.0], [2.0]]) + 0.25
    return [(data[:4], target[:4]), (data[4:], target[4:])]


def _pair(model: nn.Module) -> nn.Module:
    """A local twin with the same initial values, trained with torch.optim for reference."""
    return copy.deepcopy(model)


def _assert_same_parameters(model: nn.Module, reference: nn.Module) -> None:
    for (name, got), want in zip(model.named_parameters(), reference.parameters()):
        assert (got - want).abs().max().item() <= TOLERANCE, name


def test_sgd_on_two_nodes_matches_torch(nodes: Nodes) -> None:
    """The tutorial's loop (send, zero_grad, forward, backward, step, get) equals local torch, step by step."""
    alice, bob = nodes.connect("alice"), nodes.connect("bob")
    datasets = _datasets()
    remote = [(d.send(n), t.send(n)) for (d, t), n in zip(datasets, (alice, bob))]
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    reference = _pair(model)
    opt = node.optim.SGD(model.parameters(), lr=0.05)
    local_opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    for _ in range(3):
        for (data, target), (local_data, local_target), here in zip(remote, datasets, (alice, bob)):
            model.send(here)
            assert node.model_location(model) is here
            assert node.pointer_of(model.weight).requires_grad  # type: ignore[union-attr]
            opt.zero_grad()
            pred = model(data)
            loss = ((pred - target) ** 2).sum()
            loss.backward()
            opt.step()
            model.get()
            local_opt.zero_grad()
            local_loss = ((reference(local_data) - local_target) ** 2).sum()
            local_loss.backward()
            local_opt.step()
            assert abs(loss.get().item() - local_loss.item()) <= TOLERANCE * max(1.0, local_loss.item())
            _assert_same_parameters(model, reference)
    assert node.model_location(model) is None and model.weight.requires_grad


def test_adam_with_a_model_moved_between_nodes_matches_torch(nodes: Nodes) -> None:
    """Adam on a two-layer model that moves node to node (its moments follow it) equals torch's Adam."""
    alice, bob = nodes.connect("alice"), nodes.connect("bob")
    datasets = _datasets()
    remote = [(d.send(n), t.send(n)) for (d, t), n in zip(datasets, (alice, bob))]
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    reference = _pair(model)
    model.send(alice)  # hooked: nn.Module.send
    opt = node.optim.Adam(model.parameters(), lr=0.01)
    local_opt = torch.optim.Adam(reference.parameters(), lr=0.01)
    for _ in range(3):
        for (data, target), (local_data, local_target), here in zip(remote, datasets, (alice, bob)):
            model.move(here)
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(data), target)
            loss.backward()
            opt.step()
            local_opt.zero_grad()
            nn.functional.mse_loss(reference(local_data), local_target).backward()
            local_opt.step()
    assert opt.state[0]["exp_avg"].location == "bob"
    model.get(delete=True)
    _assert_same_parameters(model, reference)


def test_gradients_accumulate_and_match_torch(nodes: Nodes) -> None:
    """Two backward passes add their gradients, as torch's .grad does; requires_grad_ makes a leaf."""
    alice = nodes.connect("alice")
    w_local = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    x_local = torch.tensor([0.5, 0.25, -1.0])
    w = alice.send(w_local.detach()).requires_grad_()
    x = alice.send(x_local)
    assert w.is_leaf and w.requires_grad and not x.requires_grad
    for _ in range(2):
        loss = (w * x).sigmoid().sum()
        assert loss.requires_grad and not loss.is_leaf
        loss.backward()
        (w_local * x_local).sigmoid().sum().backward()
    assert w.grad is not None and w_local.grad is not None
    assert torch.allclose(w.grad.get(), w_local.grad, atol=TOLERANCE)
    (grad,) = torch.autograd.grad((w * x).sum(), [w])
    assert torch.allclose(grad.get(), x_local)


def test_the_node_refuses_autograd_methods_outside_its_allowlist(nodes: Nodes) -> None:
    """backward, requires_grad_, zero_ and grad's own dangerous keywords are refused by the node itself."""
    alice = nodes.connect("alice")
    w = alice.send(torch.ones(3)).requires_grad_()
    loss = (w * 2).sum()
    for op in ("backward", "requires_grad_", "zero_", "register_hook", "retain_grad"):
        ref = PointerRef(alice.id, loss.object_id)
        alice.post(lambda rid, op=op, ref=ref: CommandRequest(rid, op, ref, (), {}, (new_object_id(),)), op)
        with pytest.raises(UnsupportedOp, match=op):
            alice.sync()
    with pytest.raises(BadRequest, match="create_graph"):
        alice.command("grad", None, (loss, [w]), {"create_graph": True})
        alice.sync()
    with pytest.raises(BadRequest, match="requires_grad must be a bool"):
        alice.command("leaf", w, (alice.send(torch.tensor(1.0)),), {})
        alice.sync()
    with pytest.raises(UnsupportedOp):
        alice.command("backward", loss, (), {})  # the client's copy of the allowlist refuses first


def test_a_model_on_one_node_called_on_data_of_another_names_both(nodes: Nodes) -> None:
    """Mixing nodes is a MixedNodesError naming both nodes by id."""
    alice, bob = nodes.connect("alice"), nodes.connect("bob")
    model = nn.Linear(3, 1).send(bob)
    with pytest.raises(node.MixedNodesError, match="'alice'.*'bob'|'bob'.*'alice'"):
        model(alice.send(torch.ones(2, 3)))
    assert isinstance(model.weight, nn.Parameter)  # the failed forward put the local tensors back


def test_a_model_trained_on_private_data_comes_back_only_once_its_owner_releases_it(nodes: Nodes) -> None:
    """Parameters and gradients from private data inherit its policy: get is PermissionDenied until release."""
    owner = nodes.connect("alice")
    trainer = nodes.connect("alice", token=TRAINER.text)
    (data, target), _ = _datasets()
    owned_data = owner.send(data, private=True)
    owned_target = owner.send(target, private=True)
    owner.sync()
    x, y = trainer.pointer(owned_data.object_id), trainer.pointer(owned_target.object_id)
    model = nn.Linear(3, 1)
    before = model.weight.detach().clone()
    model.send(trainer)
    opt = node.optim.SGD(model.parameters(), lr=0.1)
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    weight = node.pointer_of(model.weight)
    assert weight is not None and weight.grad is not None
    with pytest.raises(PermissionDenied):
        weight.grad.get()
    with pytest.raises(PermissionDenied, match="may release it"):
        model.get()
    assert node.model_location(model) is trainer and torch.equal(model.weight.detach(), before)
    for param in model.parameters():
        pointer = node.pointer_of(param)
        assert pointer is not None
        owner.pointer(pointer.object_id).release(trainer.principal)
    model.get()
    assert not torch.equal(model.weight.detach(), before)


def test_get_delete_frees_the_remote_object(nodes: Nodes) -> None:
    """get() keeps the object (the default); get(delete=True) frees it, as PySyft's get did."""
    alice = nodes.connect("alice")
    x = alice.send(torch.arange(3.0))
    assert torch.equal(x.get(), torch.arange(3.0))
    assert x.object_id in {info.object_id for info in alice.objects()}
    assert torch.equal(x.get(delete=True), torch.arange(3.0))
    assert x.object_id not in {info.object_id for info in alice.objects()}


def test_the_example_runs() -> None:
    """examples/remote_training.py --quick trains on two nodes and prints a falling loss."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "examples/remote_training.py", "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    losses = [float(line.split()[-1]) for line in done.stdout.splitlines() if line.startswith("iteration")]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert "refused" in done.stdout


def test_in_process_nodes_train_the_same_way() -> None:
    """VirtualNodes run the same loop (moves go through this process) and match torch."""
    node.hook_torch()
    bob, alice = node.VirtualNode("bob"), node.VirtualNode("alice")
    datasets = _datasets()
    remote = [(d.send(n), t.send(n)) for (d, t), n in zip(datasets, (bob, alice))]
    torch.manual_seed(2)
    model = nn.Linear(3, 1)
    reference = _pair(model)
    model.send(bob)
    opt = node.optim.Adam(model.parameters(), lr=0.05)
    local_opt = torch.optim.Adam(reference.parameters(), lr=0.05)
    for (data, target), (local_data, local_target), here in zip(remote * 2, datasets * 2, (bob, alice) * 2):
        model.move(here)
        opt.zero_grad()
        ((model(data) - target) ** 2).sum().backward()
        opt.step()
        local_opt.zero_grad()
        ((reference(local_data) - local_target) ** 2).sum().backward()
        local_opt.step()
    model.get()
    _assert_same_parameters(model, reference)


def test_pointer_optimizers_refuse_encrypted_parameters_and_name_the_right_one() -> None:
    """node.optim steps tensors and pointers; an encrypted model's Variables are told where to go."""
    from node.client.mpc.nn import capture

    with pytest.raises(TypeError, match=r"node\.client\.mpc\.optim\.SGD"):
        node.optim.SGD(capture(nn.Linear(2, 1)).parameters(), lr=0.1)
    with pytest.raises(TypeError, match="not str$"):
        node.optim.SGD(["w"], lr=0.1)
