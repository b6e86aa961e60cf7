"""Comparison material dealt ahead (``node.preprocess``) between real in-process nodes over TLS.

The cluster of :mod:`tests.node.mpc_cluster` (bob, alice:
parties; charlie: the crypto provider).  Pre-dealt material must give the
same results, be spent once and only by a step of its exact op and shape,
let the online op run with the provider gone, and expire per
``MATERIAL_TTL`` at the parties and ``USE_WITHIN`` at the client.
"""

from __future__ import annotations

import time

import pytest
import torch

import node
from node.client.mpc.compare_steps import CHUNK_ELEMENTS
from node.client.mpc.group import SharingError
from node.client.mpc.predealt import USE_WITHIN, Predealt
from node.client.mpc.preprocess import deal_ahead
from node.server.mpc import mailbox
from protocol.errors import QuotaExceeded, TesseraError
from protocol.mpc import MATERIAL_TTL, CompareRoute, StepOp, WireCompare
from tests.node.mpc_cluster import Cluster, client, cluster  # noqa: F401 (fixture)

VALUES = torch.tensor([[-3.5, -0.0001, 0.0, 0.0001, 2.25], [1000.0, -1000.0, -32767.0, 32767.0, 7.0]])


def _mailbox_letters(cluster: Cluster, name: str) -> int:
    mpc = cluster.servers[name].mpc
    assert mpc is not None
    return mpc.mailbox.buffered


async def test_preprocessed_relu_runs_with_the_provider_stopped(cluster: Cluster) -> None:
    """After preprocess(wait=True) the material is at the parties: relu and drelu need no provider."""
    parties, provider = cluster.parties(2), cluster.provider

    def deal() -> tuple[int, int]:
        relu = node.preprocess("relu", VALUES.shape, *parties, crypto_provider=provider, wait=True)
        drelu = node.preprocess("drelu", tuple(VALUES.shape), *parties, crypto_provider=provider, count=2, wait=True)
        return relu, drelu

    assert await client(deal) == (1, 2)
    # Seed and keys of three sessions at each party, waiting for their steps.
    assert _mailbox_letters(cluster, "bob") == _mailbox_letters(cluster, "alice") == 6
    await cluster.servers["charlie"].close()

    def online() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        x = node.share(VALUES, *parties, crypto_provider=provider)
        assert x.group.compare_route is CompareRoute.FSS
        left = x.group.predealt.count()
        return x.relu().get(), x.drelu().get(), x.drelu().get(), left

    relu, bits, again, left = await client(online)
    assert left == 3
    assert torch.allclose(relu, torch.relu(VALUES), atol=2.0**-16)
    assert torch.equal(bits, VALUES >= 0) and torch.equal(again, bits)
    assert _mailbox_letters(cluster, "bob") == _mailbox_letters(cluster, "alice") == 0

    def spent() -> None:
        x = node.share(VALUES, *parties, crypto_provider=provider)
        assert x.group.predealt.count() == 0
        x.relu().get()  # every pre-dealt session is spent: this one needs the stopped provider

    with pytest.raises(TesseraError):
        await client(spent)


async def test_material_serves_only_its_own_op_and_shape(cluster: Cluster) -> None:
    """A relu of another shape, or a drelu, is dealt fresh; the pre-dealt relu waits for its shape."""
    parties, provider = cluster.parties(2), cluster.provider

    def run() -> tuple[int, int, torch.Tensor, torch.Tensor]:
        node.preprocess("relu", (2, 5), *parties, crypto_provider=provider, wait=True)
        x = node.share(VALUES, *parties, crypto_provider=provider)
        flat = node.share(VALUES.reshape(10), *parties, crypto_provider=provider)
        bits = x.drelu().get()
        other = flat.relu().get()
        left = x.group.predealt.count(StepOp.RELU)
        x.relu().get()
        return left, x.group.predealt.count(), bits, other

    left, after, bits, other = await client(run)
    assert (left, after) == (1, 0)
    assert torch.equal(bits, VALUES >= 0)
    assert torch.allclose(other, torch.relu(VALUES.reshape(10)), atol=2.0**-16)


async def test_chunked_relu_spends_one_session_per_chunk(cluster: Cluster) -> None:
    """A tensor of more than CHUNK_ELEMENTS elements is dealt (and spent) chunk by chunk."""
    parties, provider = cluster.parties(2), cluster.provider
    values = torch.linspace(-50.0, 50.0, CHUNK_ELEMENTS + 7).reshape(1, -1)

    def run() -> tuple[int, int, torch.Tensor]:
        dealt = node.preprocess("relu", values.shape, *parties, crypto_provider=provider, wait=True)
        x = node.share(values, *parties, crypto_provider=provider)
        ready = x.group.predealt.count()
        return dealt, ready, x.relu().get()

    dealt, ready, relu = await client(run)
    assert dealt == ready == 2
    assert torch.allclose(relu, torch.relu(values), atol=2.0**-15)
    assert _mailbox_letters(cluster, "bob") == 0


async def test_unused_material_expires_at_the_parties_and_the_client(cluster: Cluster) -> None:
    """Past USE_WITHIN the client deals fresh; past MATERIAL_TTL the parties dropped the letters."""
    parties, provider = cluster.parties(2), cluster.provider
    skew = [0.0]
    for name in ("bob", "alice"):
        mpc = cluster.servers[name].mpc
        assert mpc is not None
        mpc.mailbox.clock = mpc.party.clock = lambda: time.monotonic() + skew[0]  # one clock per node

    def run() -> tuple[int, int, torch.Tensor]:
        node.preprocess("relu", VALUES.shape, *parties, crypto_provider=provider, wait=True)
        x = node.share(VALUES, *parties, crypto_provider=provider)
        pool = x.group.predealt
        real = pool.clock
        pool.clock = lambda: real() + USE_WITHIN + 1
        try:
            stale = pool.count()
            skew[0] = MATERIAL_TTL + 1
            return stale, _mailbox_letters(cluster, "bob"), x.relu().get()
        finally:
            pool.clock = real

    stale, letters, relu = await client(run)
    assert stale == 0 and letters == 2  # the client no longer counts it; bob still holds it
    assert torch.allclose(relu, torch.relu(VALUES), atol=2.0**-16)  # dealt fresh
    # The fresh step's letters were taken; the expired ones went when the step arrived.
    assert _mailbox_letters(cluster, "bob") == _mailbox_letters(cluster, "alice") == 0


async def test_a_party_refusing_material_fails_the_wait_and_nothing_is_pooled(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full mailbox refuses the keys: preprocess(wait=True) raises it, and no session stays to be spent."""
    parties, provider = cluster.parties(2), cluster.provider
    monkeypatch.setattr(mailbox, "MAX_BYTES_PER_SENDER", 1000)  # an FSS key of 10 elements is ~8 KB

    def run() -> int:
        with pytest.raises(QuotaExceeded):
            node.preprocess("relu", VALUES.shape, *parties, crypto_provider=provider, count=2, wait=True)
        return node.share(VALUES, *parties, crypto_provider=provider).group.predealt.count()

    assert await client(run) == 0


def test_predealt_fifo_is_single_use_and_exact() -> None:
    now = [0.0]
    pool = Predealt(lambda: now[0])
    spec = WireCompare((3,), 32, True, CompareRoute.FSS)
    pool.put(StepOp.RELU, spec, b"first")
    pool.put(StepOp.RELU, spec, b"second")
    assert pool.take(StepOp.RELU, WireCompare((4,), 32, True, CompareRoute.FSS)) is None
    assert pool.take(StepOp.RELU, WireCompare((3,), 16, True, CompareRoute.FSS)) is None
    assert pool.take(StepOp.RELU, WireCompare((3,), 32, True, CompareRoute.A2B)) is None
    assert pool.take(StepOp.RELU, spec) == b"first"
    now[0] = USE_WITHIN  # "second" is too old to name now
    assert pool.take(StepOp.RELU, spec) is None and pool.count() == 0
    pool.put(StepOp.RELU, spec, b"third")
    pool.discard({b"third"})
    assert pool.take(StepOp.RELU, spec) is None


async def test_preprocess_refuses_what_it_cannot_deal(cluster: Cluster) -> None:
    parties, provider = cluster.parties(2), cluster.provider

    def bad(op: str, shape: tuple[int, ...], count: int) -> None:
        node.preprocess(op, shape, *parties, crypto_provider=provider, count=count)

    for op, shape, count in (("matmul", (2,), 1), ("relu", (2,), 0), ("relu", (-1,), 1)):
        with pytest.raises(SharingError):
            await client(lambda: bad(op, shape, count))
    with pytest.raises(SharingError):
        await client(lambda: deal_ahead(
            node.share(VALUES, *parties, crypto_provider=provider).group, "drelu", (2,), True))  # type: ignore[arg-type]
