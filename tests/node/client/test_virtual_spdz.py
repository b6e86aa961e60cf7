"""SPDZ among VirtualNodes: parties, crypto provider and data owner in one process, no sockets.

Every message goes through the real codec, sessions, mailboxes and
transfer reservations; node-to-node links prove in-process identities and
are pinned to them.  Results are compared with plain torch (16 fractional
bits: a few ulps per product).
"""

from __future__ import annotations

from typing import Iterator

import pytest
import torch
import torch.nn.functional as F

import node
from node.client.handle import NodeHandle
from node.client.virtual import LocalChannel
from node.server.inprocess import IN_PROCESS_SCHEME, InProcessNetwork, InProcessNode, LocalAuthenticator
from node.server.store import MemoryStore, Quota
from node.server.transfers import TransferService
from peer.security.trust import CertificateMismatch
from protocol.errors import BadRequest, PermissionDenied, QuotaExceeded, Unauthenticated
from protocol.ids import NodeId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.codec import decode_message, encode_message
from protocol.messages import ErrorReply, HelloRequest, SyncRequest
from protocol.mpc import BilinearKind, MpcMaterialRequest, MpcOpenRequest, OpenRound, WireTriple

ULP = 2.0**-16
SPECS = (WireTriple(BilinearKind.MUL, (1,), (1,)),)


@pytest.fixture
def nodes() -> Iterator[dict[str, node.VirtualNode]]:
    handles = {name: node.VirtualNode(name) for name in ("bob", "alice", "dave", "charlie")}
    yield handles
    for handle in handles.values():
        handle.close()


def test_comparisons_and_encrypted_models_among_virtual_nodes(nodes: dict[str, node.VirtualNode]) -> None:
    """Issue 13's comparisons run in process too: FSS for 2 parties, A2B for 3, and an encrypted model."""
    bob, alice, dave, charlie = nodes["bob"], nodes["alice"], nodes["dave"], nodes["charlie"]
    values = torch.tensor([[-3.0, -0.25, 0.0, 0.5], [2.0, -1.0, 4.0, -8.0]])
    for parties, route in (((bob, alice), "fss"), ((bob, alice, dave), "a2b")):
        x = node.share(values, *parties, crypto_provider=charlie)
        assert x.group.compare_route.value == route
        assert torch.equal((x > 0).get(), values > 0)
        assert torch.equal(x.relu().get(), values.relu())
        top, index = torch.max(x, dim=1)
        assert torch.equal(top.get(), values.max(dim=1).values)
        assert torch.equal(index.get(), values.max(dim=1).indices)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    enc = node.encrypt(model, bob, alice, crypto_provider=charlie)
    shared = node.share(values, bob, alice, crypto_provider=charlie)
    with torch.no_grad():
        expected = model(values)
    assert torch.allclose(enc.predict(shared).get(), expected, atol=64 * ULP)


def test_products_among_virtual_nodes_match_torch(nodes: dict[str, node.VirtualNode]) -> None:
    """x * y, x @ w, conv2d and a chain of products, 2 parties (local truncation) and 3 (dealer truncation)."""
    bob, alice, dave, charlie = nodes["bob"], nodes["alice"], nodes["dave"], nodes["charlie"]
    torch.manual_seed(0)
    a, b, w = torch.randn(3, 4), torch.randn(3, 4), torch.randn(4, 2)
    for parties in ((bob, alice), (bob, alice, dave)):
        x = node.share(a, *parties, crypto_provider=charlie)
        y = node.share(b, *parties, crypto_provider=charlie)
        m = node.share(w, *parties, crypto_provider=charlie)
        assert torch.allclose((x * y).get(), a * b, atol=8 * ULP)
        assert torch.allclose((x @ m).get(), a @ w, atol=32 * ULP)
        assert torch.allclose(((x * y) * y - x * 0.25).get(), a * b * b - a * 0.25, atol=64 * ULP)
        image, kernel = a.reshape(1, 1, 3, 4), torch.randn(2, 1, 2, 2)
        conv = F.conv2d(x.reshape(1, 1, 3, 4), node.share(kernel, *parties, crypto_provider=charlie))
        assert torch.allclose(conv.get(), F.conv2d(image, kernel), atol=32 * ULP)
    assert torch.equal(
        (node.share(torch.tensor([25.0]), bob, alice, crypto_provider=charlie)
         * node.share(torch.tensor([5.0]), bob, alice, crypto_provider=charlie)).get(),
        torch.tensor([125.0]),
    )


def test_a_virtual_data_owner_splits_its_data_node_to_node(nodes: dict[str, node.VirtualNode]) -> None:
    """ptr.share(...): dave splits its object and delivers each share over an in-process link."""
    bob, alice, dave, charlie = nodes["bob"], nodes["alice"], nodes["dave"], nodes["charlie"]
    data = dave.send(torch.tensor([1.5, -2.0, 4.0]))
    shared = data.share(bob, alice, crypto_provider=charlie)
    assert shared.parties == ("bob", "alice") and shared.crypto_provider == "charlie"
    assert torch.equal((shared * shared).get(), torch.tensor([2.25, 4.0, 16.0]))
    assert len(bob.store) >= 1 and len(alice.store) >= 1


def test_private_data_is_shared_only_with_its_node_and_stays_private(nodes: dict[str, node.VirtualNode]) -> None:
    """Another user's private tensor: splitting it away from its node is refused; the shares keep its policy."""
    bob, alice, dave = nodes["bob"], nodes["alice"], nodes["dave"]
    secret = dave.send(torch.tensor([3.0, 4.0]), private=True)
    dave.sync()
    eve = NodeHandle(LocalChannel(dave.server, "eve"))  # a second user of dave, another principal
    try:
        theirs = eve.pointer(secret.object_id)
        with pytest.raises(PermissionDenied, match="make this node"):
            theirs.share(bob, alice)
        shared = theirs.share(dave, bob)
        with pytest.raises(PermissionDenied):
            (shared + shared).get()
    finally:
        eve.close()


def test_quotas_hold_shares_delivered_node_to_node(nodes: dict[str, node.VirtualNode]) -> None:
    """A party's per-principal quota counts the shares a data owner delivers over an in-process link."""
    bob, dave = nodes["bob"], nodes["dave"]
    tight = node.VirtualNode("tight", quota=Quota(max_objects=1))
    try:
        data = dave.send(torch.tensor([1.0, 2.0]))
        first = data.share(bob, tight)
        with pytest.raises(QuotaExceeded, match="at most 1 objects"):
            data.share(bob, tight)
        assert torch.equal(first.get(), torch.tensor([1.0, 2.0]))
    finally:
        tight.close()


def test_users_cannot_post_node_letters_to_a_virtual_node(nodes: dict[str, node.VirtualNode]) -> None:
    """Openings and material from a user (not a node) are PERMISSION_DENIED, as on a networked node."""
    bob = nodes["bob"]
    values = (torch.zeros(1, dtype=torch.int64),)
    letters = (
        lambda rid: MpcOpenRequest(rid, bytes(16), 0, OpenRound.BEAVER, values),
        lambda rid: MpcMaterialRequest(rid, bytes(16), 0, 2, SPECS, bytes(16)),
    )
    for build in letters:
        reply = bob.call_async(build).result()
        assert isinstance(reply, ErrorReply) and reply.code == PermissionDenied.code.value


def test_in_process_links_are_pinned_to_the_identity() -> None:
    """Dialing an in-process URL with another identity's fingerprint fails like a certificate mismatch."""
    network = InProcessNetwork()
    bob, alice = InProcessNode(NodeId("bob"), network), InProcessNode(NodeId("alice"), network)
    with pytest.raises(CertificateMismatch, match="alice"):
        network.dial(bob.identity, alice.identity.url, bob.identity.fingerprint)
    link = network.dial(bob.identity, alice.identity.url, alice.identity.fingerprint)
    assert link.url == alice.identity.url


def test_in_process_node_proofs_must_verify() -> None:
    """A hello claiming an in-process node's identity without its secret is Unauthenticated."""
    network = InProcessNetwork()
    bob, alice = InProcessNode(NodeId("bob"), network), InProcessNode(NodeId("alice"), network)
    authenticator = LocalAuthenticator(network, alice.identity.fingerprint)

    def hello(credentials: dict[str, object]) -> HelloRequest:
        return HelloRequest(RequestId(1), PROTOCOL_VERSION, "bob", ("node",), credentials)  # type: ignore[arg-type]

    good = bob.identity.credentials(alice.identity.fingerprint)
    caller = authenticator.authenticate(hello(good))
    assert caller.node_sender("mpc_open") == ("bob", bob.identity.fingerprint)
    with pytest.raises(Unauthenticated, match="replayed"):
        authenticator.authenticate(hello(good))
    forged = {**bob.identity.credentials(alice.identity.fingerprint), "mac": bytes(32)}
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(hello(forged))
    for_someone_else = bob.identity.credentials(bob.identity.fingerprint)  # bound to another server
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(hello(for_someone_else))
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(hello({"scheme": IN_PROCESS_SCHEME, "fingerprint": "sha256:" + "0" * 64}))


def test_a_connection_the_node_closes_reports_its_loss_after_the_last_answer() -> None:
    """A request before the hello: answered UNAUTHENTICATED, then the connection is lost and ignores more frames."""
    network = InProcessNetwork()
    bob = InProcessNode(NodeId("bob"), network)
    replies: list[bytes] = []
    lost: list[int] = []
    connection = bob.connect(replies.append, "test", lambda: lost.append(len(replies)))
    connection.feed(encode_message(SyncRequest(RequestId(1))).to_bytes())
    answer = decode_message(replies[0])
    assert isinstance(answer, ErrorReply) and answer.code == Unauthenticated.code.value
    assert lost == [1]  # after the answer explaining why
    connection.feed(encode_message(SyncRequest(RequestId(2))).to_bytes())
    assert len(replies) == 1 and lost == [1]


def test_each_side_reaches_only_its_own_kind_of_node() -> None:
    """An in-process node refuses wss:// peers; a networked node refuses in-process URLs."""
    network = InProcessNetwork()
    local = InProcessNode(NodeId("bob"), network)
    networked = TransferService(NodeId("alice"), MemoryStore(), lambda fp: {}, 1 << 20, network=b"k" * 32)
    with pytest.raises(BadRequest, match="in-process nodes only"):
        local.transfers.check_url("wss://127.0.0.1:8765", "the parties")
    with pytest.raises(BadRequest, match="cannot be reached over the network"):
        networked.check_url(local.identity.url, "the parties")
    local.transfers.check_url(local.identity.url, "the parties")
    networked.check_url("wss://127.0.0.1:8765", "the parties")
