"""Comparison steps (drelu, relu) between real in-process nodes over TLS.

Four NodeServers in this process (bob, alice, dave: parties; charlie: the
crypto provider, dealing with the runtime's default providers), each with
the network token, so their node-to-node links are real pinned TLS links.
The client is the real synchronous client, run on a worker thread; every
result is compared with plain torch.
"""

from __future__ import annotations

import secrets

import pytest
import torch

import node
from node.client.mpc.compare_steps import CHUNK_ELEMENTS
from node.client.mpc.group import SharingError
from node.mpc import PartyError
from protocol.errors import BadRequest, PeerUnavailable
from protocol.ids import ObjectId
from protocol.mpc import (
    SESSION_BYTES,
    CompareRoute,
    DealerRef,
    MpcDealRequest,
    MpcStepRequest,
    StepOp,
    TruncationScheme,
    WireCompare,
)
from tests.node.mpc_cluster import Cluster, client, cluster  # noqa: F401 (fixture)

VALUES = torch.tensor([[-3.5, -0.0001, 0.0, 0.0001, 2.25], [1000.0, -1000.0, -32767.0, 32767.0, 7.0]])


@pytest.mark.parametrize(("n", "route"), [(3, "a2b"), (2, "a2b"), (2, "fss")])
async def test_relu_and_drelu_match_torch(cluster: Cluster, n: int, route: str) -> None:
    """relu is torch.relu within fixed-point rounding; drelu gives the bool bits [x >= 0], exactly."""

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        x = node.share(VALUES, *cluster.parties(n), crypto_provider=cluster.provider, comparison=route)
        assert x.group.compare_route is CompareRoute(route) and x.group.compare_width == 32
        return x.relu().get(), x.drelu().get()

    relu, bits = await client(run)
    assert relu.dtype == torch.float32 and torch.allclose(relu, torch.relu(VALUES), atol=2.0**-16)
    assert bits.dtype == torch.bool and torch.equal(bits, VALUES >= 0)


async def test_defaults_pick_fss_for_two_parties_and_a2b_for_three(cluster: Cluster) -> None:
    def routes() -> tuple[CompareRoute, CompareRoute]:
        two = node.share(torch.ones(2), *cluster.parties(2), crypto_provider=cluster.provider)
        three = node.share(torch.ones(2), *cluster.parties(3), crypto_provider=cluster.provider)
        return two.group.compare_route, three.group.compare_route

    assert await client(routes) == (CompareRoute.FSS, CompareRoute.A2B)


async def test_bits_meet_fixed_point_values(cluster: Cluster) -> None:
    """d * x has x's precision with no truncation; d + x scales the bit by 2^p; integers stay exact."""
    x_plain = torch.tensor([-2.5, 1.25, 3.0])

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = node.share(x_plain, *cluster.parties(3), crypto_provider=cluster.provider)
        d = x.drelu()
        return (d * x).get(), (d + x).get(), (d * d).get()

    product, total, square = await client(run)
    assert torch.equal(product, torch.tensor([0.0, 1.25, 3.0]))
    assert torch.equal(total, torch.tensor([-2.5, 2.25, 4.0]))
    assert square.dtype == torch.bool and torch.equal(square, x_plain >= 0)


async def test_a_tensor_over_one_chunk_is_compared_in_chunks(cluster: Cluster) -> None:
    """2^16 + 3 elements: two steps, concatenated back to the input's shape."""
    plain = torch.arange(CHUNK_ELEMENTS + 3, dtype=torch.int64).reshape(1, -1) - 40_000

    def run() -> torch.Tensor:
        x = node.share(plain, *cluster.parties(3), crypto_provider=cluster.provider)
        return x.relu().get()

    out = await client(run)
    assert out.dtype == torch.int64 and torch.equal(out, torch.relu(plain))


async def test_a_three_party_fss_comparison_is_refused_by_the_client(cluster: Cluster) -> None:
    def run() -> None:
        node.share(torch.ones(2), *cluster.parties(3), crypto_provider=cluster.provider, comparison="fss")

    with pytest.raises(PartyError, match="exactly 2 parties, not 3"):
        await client(run)


async def test_a_three_party_fss_step_is_refused_by_the_node_which_keeps_serving(cluster: Cluster) -> None:
    """Posted by hand (another client): BAD_REQUEST from the party and from the provider, naming the route."""

    def run() -> tuple[str, str, torch.Tensor]:
        parties = cluster.parties(3)
        x = node.share(torch.tensor([1.0, -1.0]), *parties, crypto_provider=cluster.provider)
        group = x.group
        assert group.dealer is not None
        session = secrets.token_bytes(SESSION_BYTES)
        spec = WireCompare((2,), 32, False, CompareRoute.FSS)
        messages = []
        with pytest.raises(BadRequest) as dealt:
            cluster.provider.post(lambda rid: MpcDealRequest(rid, session, group.addresses, (spec,)), "deal")
            cluster.provider.sync()
        messages.append(dealt.value.message)
        share = list(x.shares.values())[0]
        with pytest.raises(BadRequest) as stepped:
            parties[0].post(
                lambda rid: MpcStepRequest(
                    rid, session, 0, group.addresses, group.dealer, StepOp.DRELU, share.object_id, None, None,
                    0, TruncationScheme.DEALER, ObjectId(12345), 5.0, 32, CompareRoute.FSS,
                ),
                "step",
            )
            parties[0].sync()
        messages.append(stepped.value.message)
        return messages[0], messages[1], (x + 1).relu().get()

    dealt, stepped, after = await client(run)
    assert "route 'fss' works for exactly 2 parties, not 3" in dealt
    assert "route 'fss' works for exactly 2 parties, not 3" in stepped
    assert torch.equal(after, torch.tensor([2.0, 0.0]))


@pytest.mark.parametrize(
    ("op", "width", "route", "y", "message"),
    [
        (StepOp.DRELU, 0, CompareRoute.A2B, False, "needs a width"),
        (StepOp.RELU, 32, None, False, "needs a width"),
        (StepOp.MUL, 32, CompareRoute.A2B, True, "width and route are for drelu and relu"),
        (StepOp.RELU, 32, CompareRoute.A2B, True, "takes x alone"),
    ],
)
async def test_bad_comparison_fields_are_bad_request(
    cluster: Cluster, op: StepOp, width: int, route: CompareRoute | None, y: bool, message: str
) -> None:
    def run() -> None:
        parties = cluster.parties(2)
        x = node.share(torch.tensor([1.0]), *parties, crypto_provider=cluster.provider)
        group, share = x.group, list(x.shares.values())[0]
        parties[0].post(
            lambda rid: MpcStepRequest(
                rid, secrets.token_bytes(SESSION_BYTES), 0, group.addresses,
                DealerRef(group.dealer.node, group.dealer.fingerprint) if group.dealer else None, op,
                share.object_id, share.object_id if y else None, None, 0, TruncationScheme.LOCAL,
                ObjectId(777), 5.0, width, route,
            ),
            "step",
        )
        parties[0].sync()

    with pytest.raises(BadRequest, match=message):
        await client(run)


async def test_a_provider_that_dies_mid_layer_gives_a_typed_error_and_the_parties_keep_serving(
    cluster: Cluster,
) -> None:
    """The provider stops after the first chunk's deal: the relu fails PEER_UNAVAILABLE; linear ops still work."""
    plain = torch.linspace(-5, 5, 2 * CHUNK_ELEMENTS)

    def share() -> node.SharedTensor:
        return node.share(plain, *cluster.parties(3), crypto_provider=cluster.provider, timeout=5.0)

    x = await client(share)
    await cluster.servers["charlie"].close()

    def relu_then_linear() -> tuple[type[BaseException], torch.Tensor]:
        try:
            x.relu().get()
        except PeerUnavailable as exc:
            caught: type[BaseException] = type(exc)
        else:
            raise AssertionError("a relu without its provider succeeded")
        return caught, (x * 2).get()

    caught, doubled = await client(relu_then_linear)
    assert issubclass(caught, PeerUnavailable)
    assert torch.allclose(doubled, plain * 2, atol=2.0**-15)


@pytest.mark.parametrize("route", ["fss", "a2b"])
async def test_the_group_width_reaches_the_parties(cluster: Cluster, route: str) -> None:
    """|value| = 40000 at 16 fractional bits needs more than 32 bits: width 48 compares it right."""
    plain = torch.tensor([40000.0, -40000.0, 0.5, -0.5])

    def run() -> torch.Tensor:
        x = node.share(plain, *cluster.parties(2), crypto_provider=cluster.provider, comparison=route,
                       compare_width=48)
        return x.drelu().get()

    assert torch.equal(await client(run), plain >= 0)


@pytest.mark.parametrize(("options", "message"), [
    ({"compare_width": 1}, "compare_width must be an integer in \\[2, 64\\]"),
    ({"compare_width": 65}, "compare_width must be"),
    ({"compare_width": True}, "compare_width must be"),
    ({"comparison": "yao"}, "comparison must be 'fss' or 'a2b'"),
])
async def test_bad_comparison_options_are_refused_before_sending(
    cluster: Cluster, options: dict[str, object], message: str
) -> None:
    def run() -> None:
        node.share(torch.ones(2), *cluster.parties(2), crypto_provider=cluster.provider, **options)  # type: ignore[arg-type]

    with pytest.raises(SharingError, match=message):
        await client(run)
