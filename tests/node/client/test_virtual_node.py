"""VirtualNode: an in-process node whose every request and reply goes through the wire codec."""

from __future__ import annotations

import copy
import gc
import pickle
from typing import Iterator

import pytest
import torch

from node.client.pipeline import DELETE_BATCH
from node.client.pointer import Pointer
from node.client.virtual import VirtualNode
from node.errors import MixedNodesError
from protocol.errors import LocalProtocolError, NotFound, OpFailed
from protocol.ids import ObjectId
from protocol.limits import MAX_DELETE_BATCH
from protocol.messages import ObjectInfo


@pytest.fixture
def bob() -> Iterator[VirtualNode]:
    node = VirtualNode("bob")
    yield node
    node.close()


def stored(node: VirtualNode) -> int:
    """Objects held by the node's store right now (no round trip)."""
    return len(node.store)


def test_send_and_get_round_trip_through_the_codec(bob: VirtualNode) -> None:
    """A sent tensor comes back equal but as a new tensor, decoded from a frame."""
    tensor = torch.tensor([[1.5, -2.0], [3.0, 4.0]], dtype=torch.float64)
    pointer = bob.send(tensor)
    back = pointer.get()
    assert torch.equal(back, tensor) and back.dtype == torch.float64
    assert back.data_ptr() != tensor.data_ptr()
    assert torch.equal((pointer * 2 + 1).get(), tensor * 2 + 1)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_dtype_outside_the_allowlist_fails_in_the_codec(bob: VirtualNode, dtype: torch.dtype) -> None:
    """Sending a tensor whose dtype is not allowlisted raises a LocalProtocolError naming the send."""
    with pytest.raises(LocalProtocolError) as caught:
        bob.send(torch.zeros(2, dtype=dtype))
        bob.sync()
    assert caught.value.code is None
    assert "send(tensor[2]) on bob" in str(caught.value)
    assert stored(bob) == 0
    bob.sync()  # the failure was reported once; the node is still usable


def test_disallowed_dtype_as_an_op_argument_fails_at_the_next_sync(bob: VirtualNode) -> None:
    """A complex tensor passed as an op argument is refused by the encoder and reported at sync."""
    pointer = bob.send(torch.ones(2))
    pointer + torch.ones(2, dtype=torch.complex64)
    with pytest.raises(LocalProtocolError, match="add"):
        bob.sync()


def test_failed_op_is_raised_at_the_next_sync_naming_it(bob: VirtualNode) -> None:
    """An op that fails on the node surfaces at the next sync as OpFailed naming the op and node."""
    a, b = bob.send(torch.ones(2, 3)), bob.send(torch.ones(2, 3))
    a @ b
    with pytest.raises(OpFailed) as caught:
        bob.sync()
    assert "matmul" in str(caught.value) and "bob" in str(caught.value)


@pytest.mark.parametrize("node_id", ["", "-bob", ".bob", "b ob", "bob/x", "bøb", "x" * 65, "bob\t"])
def test_invalid_node_ids_are_rejected(node_id: str) -> None:
    """A node id outside 1-64 of [A-Za-z0-9_.-], starting alphanumeric, is a ValueError."""
    with pytest.raises(ValueError, match="invalid node id"):
        VirtualNode(node_id)


def test_node_id_with_a_trailing_newline_is_rejected() -> None:
    """A node id ending in a newline is a ValueError like any other bad character."""
    with pytest.raises(ValueError):
        VirtualNode("bob\n")


@pytest.mark.parametrize("node_id", ["a", "x" * 64, "node-1.b_c", "7"])
def test_valid_node_ids_are_accepted(node_id: str) -> None:
    """Ids of 1-64 allowed characters, starting alphanumeric, name the node."""
    node = VirtualNode(node_id)
    assert node.id == node_id and node.principal.startswith("anon-")


def test_pointers_of_two_nodes_cannot_be_mixed(bob: VirtualNode) -> None:
    """An op or a send mixing pointers of two VirtualNodes raises MixedNodesError (a ValueError)."""
    carol = VirtualNode("carol")
    mine, theirs = bob.send(torch.ones(2)), carol.send(torch.ones(2))
    with pytest.raises(MixedNodesError, match="'bob' and 'carol'"):
        mine + theirs
    with pytest.raises(MixedNodesError):
        torch.cat([mine, theirs])
    with pytest.raises(ValueError):
        bob.send(theirs)
    bob.sync()
    carol.sync()
    assert stored(bob) == 1 and stored(carol) == 1


def test_send_of_an_own_pointer_returns_it(bob: VirtualNode) -> None:
    """Sending a pointer that already lives on the node is a no-op returning the same pointer."""
    pointer = bob.send(torch.ones(1))
    assert bob.send(pointer) is pointer


def test_dropped_pointer_is_freed_at_the_next_sync(bob: VirtualNode) -> None:
    """Dropping the last reference to a pointer deletes its object on the next sync."""
    pointer = bob.send(torch.ones(3))
    keep = bob.send(torch.zeros(1))
    bob.sync()
    assert stored(bob) == 2
    del pointer
    gc.collect()
    assert stored(bob) == 2, "deletes wait for a sync point or a full batch"
    bob.sync()
    assert stored(bob) == 1 and bob.objects() == [ObjectInfo(keep.object_id, "float32", (1,), bob.principal)]


def test_explicit_delete_and_get_delete_free_the_object(bob: VirtualNode) -> None:
    """pointer.delete() frees at the next sync; get(delete=True) frees at once."""
    first, second = bob.send(torch.ones(1)), bob.send(torch.ones(2))
    assert torch.equal(second.get(delete=True), torch.ones(2))
    assert stored(bob) == 1
    first.delete()
    bob.sync()
    assert stored(bob) == 0
    with pytest.raises(NotFound):
        second.get()


def test_more_than_a_batch_of_releases_is_deleted_on_the_next_post(bob: VirtualNode) -> None:
    """Once DELETE_BATCH pointers are released, the next posted request deletes them: no sync needed."""
    pointers = [bob.send(torch.tensor([i])) for i in range(DELETE_BATCH + 1)]
    assert stored(bob) == DELETE_BATCH + 1
    del pointers
    gc.collect()
    survivor = bob.send(torch.tensor([-1]))
    assert stored(bob) == 1
    assert bob.store.get(bob.principal, survivor.object_id).value.tolist() == [-1]


def test_fewer_than_a_batch_of_releases_waits_for_a_sync_point(bob: VirtualNode) -> None:
    """Fewer than DELETE_BATCH releases are not sent by a post, only by the next sync point."""
    pointers = [bob.send(torch.tensor([i])) for i in range(DELETE_BATCH - 1)]
    del pointers
    gc.collect()
    survivor = bob.send(torch.tensor([0]))
    assert stored(bob) == DELETE_BATCH
    assert [info.object_id for info in bob.objects()] == [survivor.object_id]
    assert stored(bob) == 1


def test_dropping_more_than_max_delete_batch_pointers_frees_them_all(bob: VirtualNode) -> None:
    """Releasing more pointers than one delete may name still frees them all, quietly."""
    real = bob.send(torch.ones(1))
    # Pointers to ids the node never stored stand in for real objects (delete is
    # idempotent) and keep the test fast; they take the same release path.
    pointers = [Pointer(bob, ObjectId(i + 1)) for i in range(MAX_DELETE_BATCH)]
    pointers.append(real)
    del pointers, real
    gc.collect()
    bob.sync()
    assert stored(bob) == 0


def test_iteration_yields_a_pointer_per_row(bob: VirtualNode) -> None:
    """Iterating a pointer yields one pointer per row along dim 0, each naming that row."""
    tensor = torch.arange(6).reshape(3, 2)
    rows = list(bob.send(tensor))
    assert len(rows) == 3 and all(isinstance(row, Pointer) for row in rows)
    assert [row.get().tolist() for row in rows] == tensor.tolist()


def test_iterating_a_scalar_pointer_is_a_type_error(bob: VirtualNode) -> None:
    """A 0-d pointer has no rows, like a 0-d tensor."""
    with pytest.raises(TypeError):
        list(bob.send(torch.tensor(5)))


def test_truth_value_of_a_pointer_is_a_type_error(bob: VirtualNode) -> None:
    """bool(pointer), and so `if pointer:`, raises TypeError instead of guessing."""
    pointer = bob.send(torch.tensor([True]))
    with pytest.raises(TypeError, match="get"):
        bool(pointer)
    with pytest.raises(TypeError):
        if pointer:
            pass


def test_repr_shows_the_node_and_no_data(bob: VirtualNode) -> None:
    """repr names the node, the object id, dtype and shape, never the values."""
    pointer = bob.send(torch.tensor([987654321, 123456789]))
    text = repr(pointer)
    assert text.startswith("<Pointer bob:") and f"{pointer.object_id:#018x}" in text
    assert "int64[2]" in text
    assert "987654321" not in text and "123456789" not in text


def test_pickling_a_pointer_is_a_type_error(bob: VirtualNode) -> None:
    """A pointer is bound to a live connection: pickling raises TypeError, copying returns itself."""
    pointer = bob.send(torch.ones(1))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(pointer, protocol=protocol)
    assert copy.copy(pointer) is pointer and copy.deepcopy(pointer) is pointer


def test_objects_lists_only_this_clients_objects() -> None:
    """Two VirtualNodes have separate stores; objects() lists what this client holds."""
    first, second = VirtualNode("bob"), VirtualNode("bob")
    pointer = first.send(torch.zeros(2, 3, dtype=torch.int32))
    assert first.objects() == [ObjectInfo(pointer.object_id, "int32", (2, 3), first.principal)]
    assert second.objects() == []
    assert first.principal != second.principal


def test_move_and_copy_between_in_process_nodes_go_through_the_client(bob: VirtualNode) -> None:
    """In-process nodes move data through this process: move frees the source, copy_to keeps it."""
    alice = VirtualNode("alice")
    assert alice.in_process and bob.in_process
    pointer = bob.send(torch.arange(3.0), private=True)
    copy_ = pointer.copy_to(alice)
    assert copy_.location == "alice" and torch.equal(copy_.get(), torch.arange(3.0))
    assert pointer.move(alice) is pointer and pointer.location == "alice"
    bob.sync()
    assert stored(bob) == 0 and stored(alice) == 2
    assert "private" in repr(pointer) and torch.equal(pointer.get(), torch.arange(3.0))
