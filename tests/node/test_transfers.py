"""Node-to-node transfers: move and copy_to go straight from node to node over TLS."""

from __future__ import annotations

import pytest
import torch

import node
from tests.support import NodeProcess


@pytest.fixture
def pair(spawn_node):  # type: ignore[no-untyped-def]
    alice_proc: NodeProcess = spawn_node("alice")
    bob_proc: NodeProcess = spawn_node("bob")
    alice = node.connect(alice_proc.url, cafile=alice_proc.cafile)
    bob = node.connect(bob_proc.url, cafile=bob_proc.cafile)
    yield alice, bob, alice_proc, bob_proc
    alice.close()
    bob.close()


def test_move_sends_the_object_to_the_other_node(pair) -> None:  # type: ignore[no-untyped-def]
    """After move, the pointer names bob's copy and alice holds nothing of it."""
    alice, bob, _, bob_proc = pair
    x = alice.send(torch.arange(5.0))
    old_id = x.object_id
    assert x.move(bob) is x
    assert x.location == "bob" and x.object_id != old_id
    assert torch.equal(x.get(), torch.arange(5.0))
    assert torch.equal((x * 2).get(), torch.arange(5.0) * 2)
    assert old_id not in {info.object_id for info in alice.objects()}


def test_copy_to_leaves_the_original(pair) -> None:  # type: ignore[no-untyped-def]
    """copy_to returns a pointer on bob and keeps alice's object."""
    alice, bob, _, _ = pair
    x = alice.send(torch.tensor([1, 2, 3]))
    y = x.copy_to(bob)
    assert y.location == "bob" and x.location == "alice"
    assert torch.equal(y.get(), x.get())


def test_move_of_a_missing_object_fails_cleanly(pair) -> None:  # type: ignore[no-untyped-def]
    """Moving an object whose command failed raises the root cause; both nodes keep serving."""
    alice, bob, _, _ = pair
    bad = alice.send(torch.ones(2)).view(5)  # fails on alice
    with pytest.raises(node.TesseraError):
        bad.move(bob)
    assert torch.equal(bob.send(torch.ones(1)).get(), torch.ones(1))


def test_links_are_pooled(pair) -> None:  # type: ignore[no-untyped-def]
    """Many transfers reuse one node-to-node link (one hello from alice at bob)."""
    alice, bob, _, bob_proc = pair
    for value in range(5):
        pointer = alice.send(torch.tensor([value]))
        pointer.move(bob)
        assert torch.equal(pointer.get(), torch.tensor([value]))
    hellos = [line for line in bob_proc.stderr().splitlines() if "as node:alice@" in line]
    assert len(hellos) == 1
