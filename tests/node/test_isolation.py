"""Clients see and touch only their own objects (PySyft 0.2 let anyone list everything)."""

from __future__ import annotations

import pytest
import torch

import node
from tests.support import NodeProcess, admit
from protocol.ids import ObjectId


def test_other_clients_objects_are_invisible(shared_node: NodeProcess) -> None:
    """Bob cannot list, get, compute on or delete Alice's objects: all NOT_FOUND."""
    alice = node.connect(shared_node.url, cafile=shared_node.cafile)
    bob = node.connect(shared_node.url, cafile=shared_node.cafile, token=admit(shared_node.state_dir, "bob"))
    try:
        secret = alice.send(torch.tensor([42.0]))
        alice.sync()
        assert secret.object_id not in {i.object_id for i in bob.objects()}
        stolen = node.Pointer(bob, ObjectId(secret.object_id))
        with pytest.raises(node.NotFound):
            stolen.get()
        derived = stolen + 1
        with pytest.raises(node.NotFound):
            derived.get()
        stolen.delete()
        bob.sync()
        assert torch.equal(secret.get(), torch.tensor([42.0]))
        assert alice.principal != bob.principal
    finally:
        alice.close()
        bob.close()


def test_object_ids_cannot_be_hijacked(shared_node: NodeProcess) -> None:
    """Reusing another client's object id for a new object fails; the original survives."""
    alice = node.connect(shared_node.url, cafile=shared_node.cafile)
    bob = node.connect(shared_node.url, cafile=shared_node.cafile, token=admit(shared_node.state_dir, "bob"))
    try:
        original = alice.send(torch.tensor([1]))
        alice.sync()
        from protocol.messages import PutRequest

        bob.post(lambda rid: PutRequest(rid, original.object_id, torch.tensor([666])), "hijack")
        with pytest.raises(node.AlreadyExists):
            bob.sync()
        assert torch.equal(original.get(), torch.tensor([1]))
    finally:
        alice.close()
        bob.close()
