"""SPDZ over real node processes and TLS: 2 and 3 parties plus a crypto provider.

Every secure result is compared with plain torch, with a tolerance derived
from the precision (16 fractional bits: encoding error 2^-17 per operand,
truncation 1 ulp = 2^-16 per product).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

import node
from peer.client.sync_channel import SyncChannel
from node.mpc import PartyError, UnsupportedDtype
from peer.security.tokens import new_network_token
from protocol.codec import decode_message
from protocol.errors import PeerUnavailable, PermissionDenied
from protocol.ids import RequestId
from protocol.messages import ErrorReply
from protocol.mpc import MpcOpenRequest, OpenRound
from tests.support import NodeProcess, admit, start_node

ULP = 2.0**-16


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    tmp = tmp_path_factory.mktemp("spdz")
    started = {name: start_node(tmp, name) for name in ("bob", "alice", "dave", "charlie")}
    yield started
    for proc in started.values():
        proc.stop()
    for proc in started.values():
        assert "Traceback" not in proc.stderr(), proc.stderr()


@pytest.fixture(scope="module")
def received() -> list[str]:
    """Kinds of every message the client process receives in this module."""
    return []


@pytest.fixture(scope="module")
def nodes(procs: dict[str, NodeProcess], received: list[str]) -> Iterator[dict[str, node.RemoteNode]]:
    original = SyncChannel.frame_received

    def recording(self: SyncChannel, data: Any) -> None:
        message = decode_message(bytes(data))
        received.append(message.KIND.value)
        original(self, data)

    SyncChannel.frame_received = recording  # type: ignore[method-assign]
    handles = {name: node.connect(p.url, cafile=p.cafile) for name, p in procs.items()}
    yield handles
    SyncChannel.frame_received = original  # type: ignore[method-assign]
    for handle in handles.values():
        handle.close()


def _parties(nodes: dict[str, node.RemoteNode], n: int) -> tuple[node.RemoteNode, ...]:
    return (nodes["bob"], nodes["alice"], nodes["dave"])[:n]


def test_pysyft_example(nodes: dict[str, node.RemoteNode]) -> None:
    """x = 25, y = 5 shared between bob and alice: x + y is 30 and x * y is 125, exactly."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    x = node.share(torch.tensor([25.0]), bob, alice, crypto_provider=charlie)
    y = node.share(torch.tensor([5.0]), bob, alice, crypto_provider=charlie)
    s_bob, s_alice = x.shares["bob"].get(), x.shares["alice"].get()
    assert s_bob.dtype == torch.int64 and s_bob.item() != 25 << 16
    assert (s_bob + s_alice).item() == 25 << 16
    assert torch.equal((x + y).get(), torch.tensor([30.0]))
    assert torch.equal((x * y).get(), torch.tensor([125.0]))


def test_pointer_share_keeps_data_on_its_owner(nodes: dict[str, node.RemoteNode]) -> None:
    """ptr.share: alice's node splits the tensor and delivers each share; values come back right."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    t = torch.tensor([[1.5, -2.25], [3.0, 0.125]])
    ptr = alice.send(t)
    s = ptr.share(bob, alice, crypto_provider=charlie)
    assert s.shape == t.shape and s.precision == 16
    assert torch.equal(s.get(), t)
    assert torch.allclose((s * s).get(), t * t, atol=4 * ULP)
    ints = alice.send(torch.tensor([7, -3])).share(bob, alice, crypto_provider=charlie)
    assert ints.precision == 0 and torch.equal((ints * ints).get(), torch.tensor([49, 9]))


def test_hook_torch_share(nodes: dict[str, node.RemoteNode]) -> None:
    """After hook_torch(), torch.tensor([25.]).share(bob, alice, crypto_provider=charlie) works."""
    node.hook_torch()
    x = torch.tensor([25.0]).share(nodes["bob"], nodes["alice"], crypto_provider=nodes["charlie"])  # type: ignore[attr-defined]
    assert torch.equal((x * 2 + 1).get(), torch.tensor([51.0]))


def _tol(*bounds: float, terms: int = 1) -> float:
    """Error bound of a fixed-point product: encoding of both operands plus 1 ulp per truncation."""
    return terms * (sum(bounds) + 1) * ULP + 2 * ULP


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_ops_match_torch(nodes: dict[str, node.RemoteNode], n: int, scale: float) -> None:
    """Every op on shared tensors matches plain torch within the precision's bound."""
    torch.manual_seed(int(scale * 100) + n)
    parties = _parties(nodes, n)
    charlie = nodes["charlie"]
    a, b = torch.randn(4, 6) * scale, torch.randn(4, 6) * scale
    w = torch.randn(6, 3) * scale
    img, kern = torch.randn(1, 2, 5, 5) * scale, torch.randn(3, 2, 3, 3) * scale
    share = lambda t: node.share(t, *parties, crypto_provider=charlie)  # noqa: E731
    x, y, sw, simg, skern = share(a), share(b), share(w), share(img), share(kern)
    m = float(max(a.abs().max(), b.abs().max(), w.abs().max(), img.abs().max(), kern.abs().max()))
    checks: list[tuple[str, Any, torch.Tensor, float]] = [
        ("add", x + y, a + b, 2 * ULP),
        ("sub", x - y, a - b, 2 * ULP),
        ("neg", -x, -a, ULP),
        ("add public", x + 1.5, a + 1.5, ULP),
        ("rsub public", 2.0 - x, 2.0 - a, ULP),
        ("mul int", x * 3, a * 3, 3 * ULP),
        ("mul real", x * 0.25, a * 0.25, 2 * ULP),
        ("div", x / 4, a / 4, 2 * ULP),
        ("mul", x * y, a * b, _tol(m, m)),
        ("matmul", x @ sw, a @ w, _tol(m, m, terms=6)),
        ("matmul public", x @ w, a @ w, _tol(m, m, terms=6)),
        ("rmatmul public", w.t() @ x.t(), w.t() @ a.t(), _tol(m, m, terms=6)),
        ("conv2d", F.conv2d(simg, skern), F.conv2d(img, kern), _tol(m, m, terms=18)),
        ("conv2d public", F.conv2d(simg, kern, padding=1), F.conv2d(img, kern, padding=1), _tol(m, m, terms=18)),
        ("sum", x.sum(), a.sum(), 24 * ULP),
        ("sum dim", x.sum(dim=1), a.sum(dim=1), 6 * ULP),
        ("mean", x.mean(), a.mean(), (24 + m) * ULP),
        ("reshape", x.reshape(2, 12), a.reshape(2, 12), ULP),
        ("view", x.view(-1), a.view(-1), ULP),
        ("t", x.t(), a.t(), ULP),
        ("T", x.T, a.T, ULP),
        ("transpose", x.transpose(0, 1), a.transpose(0, 1), ULP),
        ("index", x[1:3, ::2], a[1:3, ::2], ULP),
        ("chain", (x * y + x) @ sw, (a * b + a) @ w, _tol(m * m + m, m, terms=6) + 6 * m * _tol(m, m)),
    ]
    for name, shared, expected, tol in checks:
        got = shared.get()
        assert got.shape == expected.shape, name
        error = float((got - expected).abs().max())
        assert error <= tol, f"{name} (n={n}, scale={scale}): error {error:.3g} > {tol:.3g}"


def test_integers_are_exact(nodes: dict[str, node.RemoteNode]) -> None:
    """Integer tensors are shared with 0 fractional bits: products are exact, no truncation."""
    parties = _parties(nodes, 3)
    a, b = torch.randint(-1000, 1000, (50,)), torch.randint(-1000, 1000, (50,))
    x = node.share(a, *parties, crypto_provider=nodes["charlie"])
    y = node.share(b, *parties, crypto_provider=nodes["charlie"])
    assert torch.equal((x * y + 3 - x).get(), a * b + 3 - a)
    assert torch.equal((x * 2.0 - x * 3).get(), -a)  # integer-valued floats scale exactly, unscaled
    with pytest.raises(node.SharingError, match="non-integer"):
        x * 0.5


def test_million_products_within_the_bound(nodes: dict[str, node.RemoteNode]) -> None:
    """10^6 fixed-point products: dealer truncation never fails; local stays within 1 ulp here."""
    bob, alice, charlie = nodes["bob"], nodes["alice"], nodes["charlie"]
    a, b = torch.randn(10**6, dtype=torch.float64), torch.randn(10**6, dtype=torch.float64)
    bound = _tol(float(a.abs().max()), float(b.abs().max()))
    for scheme in ("dealer", "local"):
        x = node.share(a, bob, alice, crypto_provider=charlie, truncation=scheme)
        y = node.share(b, bob, alice, crypto_provider=charlie, truncation=scheme)
        error = float(((x * y).get() - a * b).abs().max())
        assert error <= bound, f"{scheme}: error {error:.3g} > {bound:.3g}"


def test_shares_above_the_stream_threshold_are_reconstructed(nodes: dict[str, node.RemoteNode]) -> None:
    """Each party's share is over 16 MiB: the get answers with a description and the share streams."""
    a = torch.arange(2_200_000, dtype=torch.float64)
    x = node.share(a, nodes["bob"], nodes["alice"], crypto_provider=nodes["charlie"])
    assert torch.equal(x.get(), a)


def test_bad_input_is_refused_before_sending(nodes: dict[str, node.RemoteNode]) -> None:
    """Mixed parties or precisions, bad shapes and dtypes, in-process or duplicate nodes: typed errors."""
    bob, alice, dave, charlie = nodes["bob"], nodes["alice"], nodes["dave"], nodes["charlie"]
    x = node.share(torch.ones(3), bob, alice, crypto_provider=charlie)
    other = node.share(torch.ones(3), bob, dave, crypto_provider=charlie)
    with pytest.raises(node.MixedParties, match="bob.*alice.*bob.*dave"):
        x + other
    coarse = node.share(torch.ones(3), bob, alice, crypto_provider=charlie, precision=8)
    with pytest.raises(node.PrecisionMismatch, match="16 and 8"):
        x * coarse
    with pytest.raises(node.ShapeMismatch):
        x * node.share(torch.ones(4), bob, alice, crypto_provider=charlie)
    with pytest.raises(node.ShapeMismatch):
        x @ node.share(torch.ones(2, 2), bob, alice, crypto_provider=charlie)
    with pytest.raises(UnsupportedDtype, match="complex"):
        node.share(torch.ones(2, dtype=torch.complex64), bob, alice, crypto_provider=charlie)
    with pytest.raises(node.MixedNetworks, match=r"in-process nodes \(v\) with networked nodes \(bob, charlie\)"):
        node.share(torch.ones(2), bob, node.VirtualNode("v"), crypto_provider=charlie)
    with pytest.raises(PartyError, match="crypto provider"):
        node.share(torch.ones(2), bob, charlie, crypto_provider=charlie)
    with pytest.raises(PartyError, match="local"):
        node.share(torch.ones(2), bob, alice, dave, crypto_provider=charlie, truncation="local")
    with pytest.raises(node.SharingError, match="non-integer"):
        node.share(torch.tensor([1, 2]), bob, alice, crypto_provider=charlie) + 0.5
    assert torch.equal((x + x).get(), torch.full((3,), 2.0))


def test_openings_are_refused_from_users(nodes: dict[str, node.RemoteNode]) -> None:
    """A user principal cannot inject masked values: mpc_open from a client is PERMISSION_DENIED."""
    bob = nodes["bob"]
    values = (torch.zeros(1, dtype=torch.int64),)
    reply = bob.call_async(lambda rid: MpcOpenRequest(rid, bytes(16), 0, OpenRound.BEAVER, values)).result()
    assert isinstance(reply, ErrorReply) and reply.code == PermissionDenied.code.value


@pytest.mark.parametrize(("n", "route"), [(2, "fss"), (3, "a2b")])
def test_comparisons_match_torch(nodes: dict[str, node.RemoteNode], n: int, route: str) -> None:
    """relu and drelu over node processes, by each group's default route (fss for 2 parties, a2b for 3)."""
    torch.manual_seed(n)
    plain = torch.randn(3, 50) * 100
    x = node.share(plain, *_parties(nodes, n), crypto_provider=nodes["charlie"])
    assert x.group.compare_route.value == route
    assert torch.equal(x.drelu().get(), plain >= 0)
    assert float((x.relu().get() - torch.relu(plain)).abs().max()) <= ULP


def test_client_never_receives_masked_values(nodes: dict[str, node.RemoteNode], received: list[str]) -> None:
    """Every frame the client received in this module was a reply; none carried an opening or material.

    The module's comparisons included: no FSS key, binary triple or comparison opening reached it.
    """
    assert received, "the recorder saw nothing"
    assert not {"mpc_open", "mpc_material", "mpc_deal", "mpc_step"} & set(received)
    replies = {"hello_reply", "get_reply", "sync_reply", "ack", "error", "mpc_split_reply", "describe_reply"}
    assert set(received) <= replies | {"read_reply"}  # read_reply: a streamed share, as get_reply


def test_unreachable_party_fails_fast_and_others_carry_on(
    nodes: dict[str, node.RemoteNode], tmp_path: Path
) -> None:
    """A party outside the network: the product fails with PeerUnavailable; the others keep working."""
    token = tmp_path / "other-network"
    token.write_text(new_network_token())
    eve_proc = start_node(tmp_path, "eve", "--network-token-file", str(token))
    try:
        eve = node.connect(eve_proc.url, cafile=eve_proc.cafile)
        bob, charlie = nodes["bob"], nodes["charlie"]
        x = node.share(torch.ones(2), bob, eve, crypto_provider=charlie, timeout=5)
        start = time.monotonic()
        with pytest.raises(PeerUnavailable, match="eve"):
            (x * x).get()
        assert time.monotonic() - start < 5
        y = node.share(torch.ones(2), bob, nodes["alice"], crypto_provider=charlie)
        assert torch.equal((y * y).get(), torch.ones(2))
        eve.close()
    finally:
        eve_proc.stop()


def test_killed_crypto_provider(nodes: dict[str, node.RemoteNode], tmp_path: Path) -> None:
    """A dead crypto provider: a typed error before anything is sent; back up, products work again."""
    provider = start_node(tmp_path, "charlie2")
    try:
        handle = node.connect(provider.url, cafile=provider.cafile)
        bob, alice = nodes["bob"], nodes["alice"]
        x = node.share(torch.tensor([3.0]), bob, alice, crypto_provider=handle)
        assert torch.equal((x * x).get(), torch.tensor([9.0]))
        provider.stop(signal.SIGKILL)
        time.sleep(0.2)  # the client's reader thread sees the connection close
        with pytest.raises(node.CryptoProviderUnavailable, match="charlie2"):
            x * x
        assert torch.equal((x + x).get(), torch.tensor([6.0]))
        again = start_node(tmp_path, "charlie2", "--port", str(provider.port), state_dir=provider.state_dir)
        provider = again
        assert torch.equal((x * x).get(), torch.tensor([9.0]))
        handle.close()
    finally:
        provider.stop()


def test_private_data_is_shared_only_with_its_own_node_as_a_party(
    procs: dict[str, NodeProcess], nodes: dict[str, node.RemoteNode]
) -> None:
    """Another user may share a private tensor only with its node as a party, and cannot reconstruct it."""
    owner_alice = nodes["alice"]
    private = owner_alice.send(torch.tensor([3.0, 4.0]), private=True)
    owner_alice.sync()
    curious = {
        name: node.connect(procs[name].url, cafile=procs[name].cafile, token=admit(procs[name].state_dir, "curious"))
        for name in ("alice", "bob", "dave", "charlie")
    }
    try:
        stolen = curious["alice"].pointer(private.object_id)
        with pytest.raises(PermissionDenied, match="make this node"):
            stolen.share(curious["bob"], curious["dave"], crypto_provider=curious["charlie"]).get()
        shared = stolen.share(curious["bob"], curious["alice"], crypto_provider=curious["charlie"])
        with pytest.raises(PermissionDenied):
            (shared * 2).get()
        with pytest.raises(PermissionDenied):
            shared.shares["alice"].get()
    finally:
        for handle in curious.values():
            handle.close()
