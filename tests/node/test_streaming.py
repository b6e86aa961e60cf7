"""Tensors above one message stream in chunks: upload, download, node-to-node move."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import node
from protocol.ids import ObjectId
from protocol.messages import PutChunkRequest
from protocol.streams import CHUNK_BYTES, STREAM_THRESHOLD
from tests.support import NodeProcess, admit

BIG = STREAM_THRESHOLD // 4 * 2 + 12345  # float32 elements: ~2x the threshold, ragged end


def test_big_tensor_round_trips_through_a_remote_node(shared_node: NodeProcess) -> None:
    """A 32 MiB tensor goes up in chunks, is computed on, and comes back intact."""
    with node.connect(shared_node.url, cafile=shared_node.cafile) as remote:
        value = torch.randn(BIG)
        pointer = remote.send(value)
        assert torch.equal(pointer.get(), value)
        assert torch.equal((pointer * 2).get(), value * 2)
        transposed = remote.send(torch.arange(3 * BIG, dtype=torch.int32).reshape(3, BIG)).t()
        assert torch.equal(transposed.get(), torch.arange(3 * BIG, dtype=torch.int32).reshape(3, BIG).t())


def test_big_get_with_delete_frees_it(shared_node: NodeProcess) -> None:
    """get(delete=True) on a streamed object frees it once downloaded."""
    with node.connect(shared_node.url, cafile=shared_node.cafile) as remote:
        pointer = remote.send(torch.ones(BIG))
        assert pointer.get(delete=True).sum().item() == BIG
        with pytest.raises(node.NotFound):
            pointer.get()


def _post_chunk(remote: Any, object_id: int, shape: tuple[int, ...], offset: int, size: int, last: bool) -> None:
    remote.post(
        lambda rid: PutChunkRequest(
            rid, ObjectId(object_id), "uint8", shape, offset, torch.zeros(size, dtype=torch.uint8), last,
        ),
        f"chunk at {offset}",
    )


def test_out_of_order_chunks_are_refused(shared_node: NodeProcess) -> None:
    """A chunk that skips bytes is BAD_REQUEST and the partial upload is dropped."""
    with node.connect(shared_node.url, cafile=shared_node.cafile) as remote:
        _post_chunk(remote, 4242, (3 * CHUNK_BYTES,), 0, CHUNK_BYTES, False)
        _post_chunk(remote, 4242, (3 * CHUNK_BYTES,), 2 * CHUNK_BYTES, CHUNK_BYTES, True)
        with pytest.raises(node.BadRequest, match="expected"):
            remote.sync()
        assert 4242 not in {info.object_id for info in remote.objects()}


def test_declared_size_above_the_object_limit_is_refused(shared_node: NodeProcess) -> None:
    """A first chunk declaring 64 GiB is refused before anything is allocated."""
    with node.connect(shared_node.url, cafile=shared_node.cafile) as remote:
        _post_chunk(remote, 4343, (64 * 1024**3,), 0, 16, False)
        with pytest.raises(node.QuotaExceeded):
            remote.sync()
        assert torch.equal(remote.send(torch.ones(1)).get(), torch.ones(1))


def test_big_move_goes_node_to_node(spawn_node) -> None:  # type: ignore[no-untyped-def]
    """move of a tensor larger than one chunk arrives intact on the other node."""
    alice_proc: NodeProcess = spawn_node("alice")
    bob_proc: NodeProcess = spawn_node("bob")
    with node.connect(alice_proc.url, cafile=alice_proc.cafile) as alice, \
            node.connect(bob_proc.url, cafile=bob_proc.cafile) as bob:
        value = torch.randn(BIG)
        pointer = alice.send(value).move(bob)
        assert pointer.location == "bob"
        assert torch.equal(pointer.get(), value)
        assert alice.objects() == []


def test_quotas_refuse_and_the_node_keeps_serving(spawn_node) -> None:  # type: ignore[no-untyped-def]
    """Beyond --max-objects / --max-memory-mib a client gets QUOTA_EXCEEDED; others are unaffected."""
    proc: NodeProcess = spawn_node("tight", "--max-objects", "3", "--max-memory-mib", "20")
    with node.connect(proc.url, cafile=proc.cafile) as greedy, \
            node.connect(proc.url, cafile=proc.cafile, token=admit(proc.state_dir, "polite")) as polite:
        kept = [greedy.send(torch.ones(1)) for _ in range(3)]
        greedy.send(torch.ones(1))
        with pytest.raises(node.QuotaExceeded):
            greedy.sync()
        big = greedy.send(torch.ones(6 * 1024 * 1024))  # 24 MiB, streamed: refused before allocating
        with pytest.raises(node.QuotaExceeded):
            greedy.sync()
        del big
        assert torch.equal(polite.send(torch.arange(3)).get(), torch.arange(3))
        assert all(torch.equal(p.get(), torch.ones(1)) for p in kept)
