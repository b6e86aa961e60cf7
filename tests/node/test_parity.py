"""One test body, two nodes: an in-process VirtualNode and a remote node over TLS."""

from __future__ import annotations

import gc
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F

import node
from tests.support import NodeProcess


@pytest.fixture(params=["virtual", "remote"])
def remote(request: pytest.FixtureRequest, shared_node: NodeProcess) -> Iterator[Any]:
    if request.param == "virtual":
        handle = node.VirtualNode("shared")
    else:
        handle = node.connect(shared_node.url, cafile=shared_node.cafile)
    yield handle
    handle.close()


def test_operators_match_torch(remote: Any) -> None:
    """Python operators on pointers give what torch gives locally."""
    a, b = torch.tensor([[1.0, -2.0], [3.0, 4.5]]), torch.tensor([[0.5, 2.0], [-1.0, 3.0]])
    x, y = remote.send(a), remote.send(b)
    cases = {
        "add": (x + y, a + b), "sub": (x - y, a - b), "mul": (x * y, a * b),
        "div": (x / y, a / b), "floordiv": (x // y, a // b), "mod": (x % y, a % b),
        "pow": (x ** 2, a ** 2), "matmul": (x @ y, a @ b), "neg": (-x, -a),
        "radd": (1 + x, 1 + a), "rsub": (1 - x, 1 - a), "rtruediv": (2 / y, 2 / b),
        "rpow": (2 ** x, 2 ** a), "lt": (x < y, a < b), "ge": (x >= 1, a >= 1),
        "eq": (x == y, a == b), "abs": (abs(x), abs(a)), "local-rhs": (x + b, a + b),
        "index": (x[1], a[1]), "slice": (x[:, 1:], a[:, 1:]), "mask": (x[x > 0], a[a > 0]),
        "T": (x.T, a.T),
    }
    for name, (pointer, expected) in cases.items():
        got = pointer.get()
        assert got.dtype == expected.dtype, name
        assert torch.allclose(got.float(), expected.float()), name


def test_methods_and_torch_functions(remote: Any) -> None:
    """Allowlisted tensor methods and torch / F functions run remotely."""
    a = torch.arange(12.0).reshape(3, 4) - 5
    x = remote.send(a)
    assert torch.equal(x.sum(dim=0).get(), a.sum(dim=0))
    assert torch.allclose(x.mean().get(), a.mean())
    assert torch.equal(x.reshape(4, 3).transpose(0, 1).get(), a.reshape(4, 3).transpose(0, 1))
    assert torch.equal(torch.cat([x, x], dim=0).get(), torch.cat([a, a], dim=0))
    assert torch.equal(torch.stack([x, x]).get(), torch.stack([a, a]))
    assert torch.allclose(F.softmax(x, dim=1).get(), F.softmax(a, dim=1))
    assert torch.equal(F.relu(x).get(), F.relu(a))
    assert torch.equal(x.argmax(dim=1).get(), a.argmax(dim=1))
    assert torch.equal(x.clamp(min=-1, max=1).get(), a.clamp(min=-1, max=1))
    values, indices = x.max(dim=1)
    assert torch.equal(values.get(), a.max(dim=1).values)
    assert torch.equal(indices.get(), a.max(dim=1).indices)
    assert torch.equal(x.long().get(), a.long())
    assert torch.equal(x.to(torch.float64).get(), a.to(torch.float64))


def test_shape_and_dtype_without_moving_data(remote: Any) -> None:
    """shape and dtype of a computed pointer come from the node's metadata."""
    x = remote.send(torch.zeros(2, 3, dtype=torch.int32))
    y = x.unsqueeze(0).float()
    assert y.shape == torch.Size([1, 2, 3])
    assert y.dtype == torch.float32
    assert len(x) == 2 and x.dim() == 2 and x.numel() == 6


def test_failed_command_surfaces_at_get_naming_it(remote: Any) -> None:
    """A pipelined command that fails raises at the next get, naming the op."""
    x = remote.send(torch.ones(2, 3))
    bad = x @ x  # 2x3 @ 2x3: shape mismatch, raised on the node
    fine = x + 1
    with pytest.raises(node.OpFailed) as raised:
        fine.get()
    assert "matmul" in str(raised.value)
    assert torch.equal(fine.get(), torch.full((2, 3), 2.0))
    del bad


def test_sync_raises_pipelined_failure(remote: Any) -> None:
    """sync() raises the failure of an earlier pipelined command, and clears it."""
    x = remote.send(torch.ones(3))
    x.view(7)  # invalid shape
    with pytest.raises(node.OpFailed, match="view"):
        remote.sync()
    remote.sync()


def test_unsupported_op_is_refused(remote: Any) -> None:
    """A torch function outside the allowlist raises instead of running."""
    x = remote.send(torch.ones(3))
    with pytest.raises(TypeError, match="allowlist"):
        torch.unique(x)
    with pytest.raises(TypeError, match="pickled"):
        torch.save(x, "/tmp/should-not-exist")


def test_objects_lists_own_objects_and_dropping_frees(remote: Any) -> None:
    """objects() lists what this client holds; dropping the pointer frees it remotely."""
    before = {info.object_id for info in remote.objects()}
    x = remote.send(torch.ones(4))
    listed = {info.object_id: info for info in remote.objects()}
    assert x.object_id in listed and listed[x.object_id].shape == (4,)
    object_id = x.object_id
    del x
    gc.collect()
    remote.sync()
    after = {info.object_id for info in remote.objects()}
    assert object_id not in after and after <= before | {object_id}


def test_ops_mixing_two_nodes_raise(remote: Any) -> None:
    """An op with pointers on two different nodes raises MixedNodesError at once."""
    other = node.VirtualNode("other")
    x, y = remote.send(torch.ones(1)), other.send(torch.ones(1))
    with pytest.raises(node.MixedNodesError, match="other"):
        x + y


def test_get_with_delete_frees_the_object(remote: Any) -> None:
    """get(delete=True) returns the value and frees it on the node."""
    x = remote.send(torch.tensor([5]))
    assert torch.equal(x.get(delete=True), torch.tensor([5]))
    with pytest.raises(node.NotFound):
        x.get()


def test_hook_torch_adds_send(remote: Any) -> None:
    """After hook_torch(), tensor.send(node) returns a pointer, PySyft style."""
    node.hook_torch()
    pointer = torch.tensor([1, 2]).send(remote)
    assert isinstance(pointer, node.Pointer)
    assert torch.equal((pointer * 2).get(), torch.tensor([2, 4]))
