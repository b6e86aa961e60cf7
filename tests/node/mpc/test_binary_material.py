"""Binary material: specs validated, correlations correct, shares uniform, explicit tensors checked."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from node.mpc.adders import and_plan
from node.mpc.binary import xor_all
from node.mpc.binary_material import (
    BinaryDealer,
    BinaryMaterial,
    BinarySpec,
    and_words,
    expand_binary,
)
from node.mpc.dealer import Dealer
from node.mpc.errors import MaterialError, PartyError, RingError, SeedError
from node.mpc.kinds import MaterialKind
from node.mpc.material import MAX_MATERIAL_ELEMENTS
from node.mpc.prg import Seed
from node.mpc.provider import Providers, kind_of
from node.mpc.shares import reconstruct
from tests.node.mpc.stats import looks_uniform

SPECS = (BinarySpec((40, 50), 32), BinarySpec((7,), 8, relu=True), BinarySpec((3, 4), 64, relu=True))


def a_count(spec: BinarySpec) -> int:
    return math.prod(spec.shape)


def _expanded(specs: tuple[BinarySpec, ...], n: int) -> list[list[BinaryMaterial]]:
    """Every party's material for every spec of one batch, as a networked party expands it."""
    bundles = BinaryDealer().deal(specs, n)
    out = []
    for party, (seed, explicit) in enumerate(bundles):
        rest = iter(explicit)
        mine = []
        for j, spec in enumerate(specs):
            count = len(spec.explicit_shapes(party, n))
            mine.append(expand_binary(seed, spec, j, party, n, tuple(itertools.islice(rest, count))))
        assert next(rest, None) is None
        out.append(mine)
    return out


@pytest.mark.parametrize("n", [2, 3, 5])
def test_correlations_hold_for_every_spec_of_a_batch(n: int) -> None:
    """c = a & b, [rho] = rho and [r rho] = r * rho for every spec of a batch."""
    parties = _expanded(SPECS, n)
    for j, spec in enumerate(SPECS):
        mats = [p[j] for p in parties]
        a, b, c = (xor_all([getattr(m, name) for m in mats]) for name in ("a", "b", "c"))
        assert a.shape == (sum(and_plan(n, spec.width, a_count(spec))),)
        assert torch.equal(c, a & b)
        rho = xor_all([m.rho_bit for m in mats])
        assert bool(((rho == 0) | (rho == 1)).all())
        assert torch.equal(reconstruct([m.rho for m in mats]), rho)
        products = [m.product for m in mats if m.product is not None]
        if spec.relu:
            r = reconstruct([p.r for p in products])
            assert torch.equal(reconstruct([p.r_rho for p in products]), r * rho)
        else:
            assert products == []


def test_specs_of_a_batch_use_disjoint_streams() -> None:
    """Two equal specs of one batch get different material."""
    spec = BinarySpec((1000,), 32)
    (first, second) = _expanded((spec, spec), 2)[0]
    assert not torch.equal(first.a, second.a) and not torch.equal(first.rho, second.rho)


def test_shares_and_explicit_tensors_look_uniform() -> None:
    """Seeded and explicit shares look uniform, and rho is a balanced bit."""
    spec = BinarySpec((20000,), 32, relu=True)
    parties = _expanded((spec,), 3)
    last, first = parties[2][0], parties[0][0]
    assert last.product is not None and first.product is not None
    for tensor in (last.c, last.rho, last.product.r_rho, first.a, first.c, first.rho, first.product.r):
        assert looks_uniform(tensor)
    rho = xor_all([p[0].rho_bit for p in parties]).double()
    assert abs(float(rho.mean()) - 0.5) < 6 * 0.5 / rho.numel() ** 0.5


def _counting_dealer() -> BinaryDealer:
    counter = itertools.count(1)
    return BinaryDealer(seed_source=lambda: Seed(bytes([next(counter)]) * 16))


def test_injected_seeds_make_the_deal_reproducible() -> None:
    """An injected seed source fixes the seeds and the explicit tensors."""
    first, second = _counting_dealer().deal(SPECS, 3), _counting_dealer().deal(SPECS, 3)
    assert [seed for seed, _ in first] == [bytes([k]) * 16 for k in (1, 2, 3)]
    assert all(torch.equal(x, y) for x, y in zip(first[2][1], second[2][1]))
    assert not any(torch.equal(x, y) for x, y in zip(first[2][1], BinaryDealer().deal(SPECS, 3)[2][1]))


def test_explicit_shapes_follow_the_plan() -> None:
    """Only the last party gets explicit tensors, sized by the packed plan."""
    spec = BinarySpec((2, 3), 32, relu=True)
    assert spec.explicit_for(2, 3) and not spec.explicit_for(0, 3)
    assert spec.explicit_shapes(0, 3) == []
    assert spec.explicit_shapes(2, 3) == [(and_words(spec, 3),), (2, 3), (2, 3)]
    # 6 elements: 32-bit words two to a word in the first rounds, then 4, 8, 16 and 32 per word.
    assert and_words(spec, 3) == 3 + 3 + 3 + 2 + 1 + 1 + 1
    assert BinarySpec((4,), 8).explicit_shapes(1, 2) == [(and_words(BinarySpec((4,), 8), 2),), (4,)]
    dependent = BinaryDealer().dependent([spec], BinaryDealer().seeds(3))
    assert list(dependent) == [2]
    assert [tuple(t.shape) for t in dependent[2]] == spec.explicit_shapes(2, 3)


@pytest.mark.parametrize(
    ("shape", "width", "relu"),
    [((3,), 1, False), ((3,), 65, False), ((3,), True, False), ((-1,), 8, False),
     ((MAX_MATERIAL_ELEMENTS + 1,), 8, False), ("abc", 8, False), ((3,), 8, 1)],
)
def test_bad_specs_are_refused(shape: object, width: object, relu: object) -> None:
    """Bad shapes, widths and relu flags raise MaterialError."""
    with pytest.raises(MaterialError):
        BinarySpec(shape, width, relu)  # type: ignore[arg-type]


def test_bad_explicit_tensors_are_refused() -> None:
    """Wrong count, shape, dtype, seed or party of explicit material raises."""
    spec = BinarySpec((4,), 8, relu=True)
    seed, explicit = BinaryDealer().deal([spec], 2)[1]
    with pytest.raises(MaterialError, match="expected 3"):
        expand_binary(seed, spec, 0, 1, 2, explicit[:2])
    with pytest.raises(MaterialError, match="expected 0"):
        expand_binary(seed, spec, 0, 0, 2, explicit)
    with pytest.raises(RingError, match="shape"):
        expand_binary(seed, spec, 0, 1, 2, (explicit[0][:-1], *explicit[1:]))
    with pytest.raises(RingError, match="int64"):
        expand_binary(seed, spec, 0, 1, 2, (explicit[0].float(), *explicit[1:]))
    with pytest.raises(SeedError):
        expand_binary(Seed(b"short"), spec, 0, 1, 2, explicit)
    with pytest.raises(PartyError):
        expand_binary(seed, spec, 0, 2, 2, explicit)


def test_the_binary_dealer_is_a_provider_of_its_kind() -> None:
    """BinaryDealer serves BINARY specs beside the Beaver dealer."""
    providers = Providers(Dealer(), BinaryDealer())
    assert kind_of(SPECS[0]) is MaterialKind.BINARY
    assert providers.for_specs(SPECS).kind is MaterialKind.BINARY
    assert BinaryDealer().cost([BinarySpec((10,), 32)]) > 0
    with pytest.raises(MaterialError, match="not a binary spec"):
        BinaryDealer().dependent([object()], BinaryDealer().seeds(2))  # type: ignore[list-item]
    with pytest.raises(PartyError):
        BinaryDealer().seeds(1)
