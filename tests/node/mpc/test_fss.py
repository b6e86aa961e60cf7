"""Two-party DReLU and ReLU by FSS: exact results, uniform views, refused material and parties."""

from __future__ import annotations

import math
from typing import Sequence

import pytest
import torch

from node.mpc.encoding import FixedPointEncoder
from node.mpc.errors import MaterialError, PartyError, RingError, SeedError
from node.mpc.fss import FssDealer, FssSpec, party_protocol, split_explicit
from node.mpc.kinds import MaterialKind
from node.mpc.material import MAX_MATERIAL_ELEMENTS
from node.mpc.prg import Seed, fresh_seed
from node.mpc.provider import Providers, kind_of
from node.mpc.rounds import Opening, RoundProtocol, run_local
from node.mpc.shares import reconstruct, split
from tests.node.mpc.stats import looks_uniform


def _edges(width: int) -> torch.Tensor:
    """Zero, +-1 and both ends of the exact range of ``width`` bits."""
    half = 1 << (width - 1)
    values = {0, -1, 1, half - 1, -half, -half + 1, half // 2, -(half // 2)}
    return torch.tensor(sorted(v for v in values if -half <= v < half), dtype=torch.int64)


def _inputs(width: int, count: int) -> torch.Tensor:
    half = 1 << (width - 1)
    if width == 64:
        body = torch.randint(-(2**63), 2**63 - 1, (count,), dtype=torch.int64)
    else:
        body = torch.randint(-half, half, (count,), dtype=torch.int64)
    return torch.cat([_edges(width), body])


def _material(specs: Sequence[FssSpec], dealer: FssDealer | None = None) -> tuple[tuple[Seed, ...], list[list[tuple[torch.Tensor, ...]]]]:
    provider = dealer or FssDealer()
    seeds = provider.seeds(2)
    dependent = provider.dependent(specs, seeds)
    return seeds, [split_explicit(specs, party, 2, dependent[party]) for party in (0, 1)]


def _run(spec: FssSpec, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    seeds, explicit = _material([spec])
    shares = split(x, 2)
    protocols = [party_protocol(spec, b, 2, seeds[b], explicit[b][0], shares[b]) for b in (0, 1)]
    results, rounds = run_local(protocols)
    return reconstruct(results), rounds


@pytest.mark.parametrize("width", [2, 3, 5, 8, 16, 31, 32, 33, 48, 63, 64])
@pytest.mark.parametrize("relu", [False, True])
def test_drelu_and_relu_are_exact_within_the_width(width: int, relu: bool) -> None:
    x = _inputs(width, 400).reshape(-1, 1)
    result, rounds = _run(FssSpec(tuple(x.shape), width, relu), x)
    positive = (x >= 0).to(torch.int64)
    assert torch.equal(result, x * positive if relu else positive)
    assert rounds == (2 if relu else 1)


@pytest.mark.parametrize("relu", [False, True])
def test_a_party_leaves_its_share_and_material_alone(relu: bool) -> None:
    """The protocol computes in place only on tensors it made: the caller's inputs are untouched."""
    x = _inputs(32, 300)
    spec = FssSpec(tuple(x.shape), 32, relu)
    seeds, explicit = _material([spec])
    shares = split(x, 2)
    kept = [(shares[b].clone(), [t.clone() for t in explicit[b][0]]) for b in (0, 1)]
    protocols = [party_protocol(spec, b, 2, seeds[b], explicit[b][0], shares[b]) for b in (0, 1)]
    results, _ = run_local(protocols)
    positive = (x >= 0).to(torch.int64)
    assert torch.equal(reconstruct(results), x * positive if relu else positive)
    for b in (0, 1):
        assert torch.equal(kept[b][0], shares[b])
        assert all(torch.equal(old, new) for old, new in zip(kept[b][1], explicit[b][0]))


def test_relu_of_fixed_point_values() -> None:
    encoder = FixedPointEncoder(16)
    values = torch.cat([torch.linspace(-30000.0, 30000.0, 1001), torch.tensor([-1e-4, 1e-4, 0.0])])
    result, _ = _run(FssSpec(tuple(values.shape), 32, True), encoder.encode(values))
    assert torch.allclose(encoder.decode(result, torch.float64), torch.relu(values).double(), atol=2**-16)


def test_a_batch_of_specs_uses_disjoint_streams() -> None:
    specs = [FssSpec((3, 4), 20, False), FssSpec((5,), 32, True), FssSpec((), 64, True)]
    xs = [_inputs(20, 4)[:12].reshape(3, 4), _inputs(32, 0)[:5], torch.tensor(-7)]
    seeds, explicit = _material(specs)
    for j, (spec, x) in enumerate(zip(specs, xs)):
        shares = split(x, 2)
        protocols = [
            party_protocol(spec, b, 2, seeds[b], explicit[b][j], shares[b], index=j) for b in (0, 1)
        ]
        results, _ = run_local(protocols)
        positive = (x >= 0).to(torch.int64)
        assert torch.equal(reconstruct(results), x * positive if spec.relu else positive)


def test_empty_tensors_compare_to_empty_results() -> None:
    result, rounds = _run(FssSpec((0, 3), 32, True), torch.zeros((0, 3), dtype=torch.int64))
    assert result.shape == (0, 3) and rounds == 2


def _drive(protocols: list[RoundProtocol]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Runs two parties like run_local; the opened sum of each round, and the result shares."""
    openings = [next(p) for p in protocols]
    sums: list[torch.Tensor] = []
    while True:
        values = [o.values for o in openings]
        sums.append(values[0][0] + values[1][0])
        following: list[Opening] = []
        results: list[torch.Tensor] = []
        for protocol in protocols:
            try:
                following.append(protocol.send(values))
            except StopIteration as stop:
                results.append(stop.value)
        if results:
            assert len(results) == 2
            return sums, results
        openings = following


def _protocols(spec: FssSpec, seeds: tuple[Seed, ...], explicit: list[list[tuple[torch.Tensor, ...]]], x: torch.Tensor) -> list[RoundProtocol]:
    shares = split(x, 2)
    return [party_protocol(spec, b, 2, seeds[b], explicit[b][0], shares[b]) for b in (0, 1)]


def test_openings_material_and_result_shares_look_uniform() -> None:
    """All-zero input: still every opened value, party 1's dealt shares and its result look uniform."""
    spec = FssSpec((30000,), 32, True)
    x = torch.zeros(30000, dtype=torch.int64)
    seeds, explicit = _material([spec])
    opened, results = _drive(_protocols(spec, seeds, explicit, x))
    assert len(opened) == 2 and all(looks_uniform(value) for value in opened)
    assert looks_uniform(results[0]) and looks_uniform(results[1])
    seed_cw, value_cw, tail, m_1, c_1 = explicit[1][0]
    for tensor in (seed_cw[3, :, 1], value_cw[10], tail[2], m_1, c_1):
        assert looks_uniform(tensor.contiguous())


def test_a_reused_key_still_computes_but_leaks_the_difference() -> None:
    """Material is single use: the same r masks both inputs, so xhat - xhat' = x - x'."""
    spec = FssSpec((50,), 32, False)
    seeds, explicit = _material([spec])
    first, second = _inputs(32, 42), _inputs(32, 42)
    opened = []
    for x in (first, second):
        sums, results = _drive(_protocols(spec, seeds, explicit, x))
        assert torch.equal(reconstruct(results), (x >= 0).to(torch.int64))
        opened.append(sums[0])
    assert torch.equal(opened[0] - opened[1], first - second)


def test_the_dealer_is_deterministic_in_its_seeds() -> None:
    seeds = iter([fresh_seed(), fresh_seed()] * 2)
    dealer = FssDealer(seed_source=lambda: next(seeds))
    spec = FssSpec((7,), 24, True)
    first, second = _material([spec], dealer), _material([spec], dealer)
    assert first[0] == second[0]
    assert all(torch.equal(a, b) for a, b in zip(first[1][1][0], second[1][1][0]))


def test_explicit_shapes_sizes_and_cost() -> None:
    spec = FssSpec((10, 3), 32, True)
    assert spec.explicit_shapes(0, 2) == [(31, 30, 2), (31, 30), (3, 30)]
    assert spec.explicit_shapes(1, 2) == [(31, 30, 2), (31, 30), (3, 30), (10, 3), (10, 3)]
    assert FssSpec((4,), 32, False).explicit_shapes(1, 2)[3:] == [(4,)]
    assert spec.explicit_for(0, 2) and spec.explicit_for(1, 2)
    assert spec.key_bytes(0) == 768 and spec.key_bytes(1) == 784
    assert FssSpec((1,), 64, False).key_bytes(1) == 1544
    _, explicit = _material([spec])
    for party in (0, 1):
        sent = explicit[party][0]
        assert [tuple(t.shape) for t in sent] == spec.explicit_shapes(party, 2)
        assert sum(t.numel() * 8 for t in sent) == spec.key_bytes(party) * spec.size
        assert all(t.dtype == torch.int64 for t in sent)
    assert FssDealer().cost([spec, FssSpec((5,), 8, False)]) == 30 * 31 + 5 * 7


def test_the_kind_is_fss_and_a_provider_deals_it() -> None:
    spec = FssSpec((2,), 16, False)
    dealer = FssDealer()
    assert kind_of(spec) is MaterialKind.FSS and dealer.kind is MaterialKind.FSS
    assert Providers(dealer).for_specs([spec]) is dealer


@pytest.mark.parametrize(
    ("shape", "width", "relu", "match"),
    [
        ((2,), 1, False, "width"),
        ((2,), 65, False, "width"),
        ((2,), True, False, "width"),
        ((-1,), 32, False, "not a shape"),
        ((2.0,), 32, False, "not a shape"),
        ((MAX_MATERIAL_ELEMENTS + 1,), 32, False, "over the limit"),
        ((2,), 32, 1, "relu"),
    ],
)
def test_malformed_specs_are_refused(shape: tuple[int, ...], width: int, relu: bool, match: str) -> None:
    with pytest.raises(MaterialError, match=match):
        FssSpec(shape, width, relu)


def test_anything_but_two_parties_is_refused() -> None:
    spec = FssSpec((3,), 16, False)
    seeds, explicit = _material([spec])
    x = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(PartyError):
        FssDealer().seeds(3)
    with pytest.raises(PartyError):
        FssDealer().dependent([spec], [fresh_seed()] * 3)
    with pytest.raises(PartyError):
        spec.explicit_shapes(0, 3)
    with pytest.raises(PartyError):
        party_protocol(spec, 0, 3, seeds[0], explicit[0][0], x)
    with pytest.raises(PartyError):
        party_protocol(spec, 2, 2, seeds[0], explicit[0][0], x)


def test_bad_material_and_inputs_are_refused_before_any_round() -> None:
    spec = FssSpec((3,), 16, True)
    seeds, explicit = _material([spec])
    good = explicit[1][0]
    x = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(RingError, match="explicit FSS tensor 0 has shape"):
        party_protocol(spec, 1, 2, seeds[1], (good[0][:, :2],) + good[1:], x)
    with pytest.raises(RingError, match="explicit FSS tensor 4 must be a torch.int64"):
        party_protocol(spec, 1, 2, seeds[1], good[:4] + (good[4].to(torch.int32),), x)
    with pytest.raises(MaterialError, match="got 4 explicit FSS tensors, expected 5"):
        party_protocol(spec, 1, 2, seeds[1], good[:4], x)
    with pytest.raises(MaterialError, match="got 5 explicit FSS tensors, expected 3"):
        party_protocol(spec, 0, 2, seeds[0], good, x)
    with pytest.raises(RingError, match="input share must be a torch.int64"):
        party_protocol(spec, 1, 2, seeds[1], good, x.double())
    with pytest.raises(RingError, match="input share has shape"):
        party_protocol(spec, 1, 2, seeds[1], good, x[:2])
    with pytest.raises(SeedError):
        party_protocol(spec, 1, 2, Seed(b"short"), good, x)
    with pytest.raises(MaterialError, match="got 8 explicit FSS tensors, expected 10"):
        split_explicit([spec, spec], 1, 2, good + good[:3])


def test_a_malformed_opening_from_the_peer_is_refused() -> None:
    spec = FssSpec((3,), 16, False)
    seeds, explicit = _material([spec])
    protocol = party_protocol(spec, 0, 2, seeds[0], explicit[0][0], torch.zeros(3, dtype=torch.int64))
    mine = next(protocol).values
    with pytest.raises(RingError, match="opened tensor of party 1 has shape"):
        protocol.send([mine, (torch.zeros(4, dtype=torch.int64),)])


def test_key_bytes_match_the_documented_formula() -> None:
    for width in (2, 32, 64):
        levels = width - 1
        assert FssSpec((1,), width, False).key_bytes(0) == 24 * levels + 24
    assert math.prod(FssSpec((4, 5), 8, False).shape) == FssSpec((4, 5), 8, False).size
