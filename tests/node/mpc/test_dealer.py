"""Dealer material: correct correlations, seeds in place of shares, validated bundles."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from node.mpc.dealer import Dealer
from node.mpc.errors import MaterialError, PartyError, RingError, SeedError
from node.mpc.material import (
    MAX_MATERIAL_ELEMENTS,
    PartyMaterial,
    TripleShares,
    TripleSpec,
    TruncationShares,
    TruncationSpec,
    as_triple,
    as_truncation,
    expand_material,
    expand_triple_masks,
    expand_triple_product,
    expand_truncation,
)
from node.mpc.prg import Seed, fresh_seed
from node.mpc.ring import BilinearOp, ConvParams, apply_bilinear, logical_shift, low_bits, top_bit
from node.mpc.shares import reconstruct
from tests.node.mpc.stats import looks_uniform

SPECS = (
    TripleSpec(BilinearOp.MUL, (4, 5), (5,)),
    TripleSpec(BilinearOp.MATMUL, (3, 7), (7, 2)),
    TruncationSpec((6,), 16),
    TripleSpec(BilinearOp.CONV2D, (2, 4, 6, 6), (4, 2, 3, 3), ConvParams(padding=(1, 1), groups=2)),
)


def _expanded(
    n: int, dealer: Dealer | None = None
) -> list[list[TripleShares | TruncationShares]]:
    bundles = (dealer or Dealer()).deal(SPECS, n)
    return [expand_material(bundle) for bundle in bundles]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_triples_satisfy_c_equals_op_of_a_b(n: int) -> None:
    """For each triple spec, the reconstructed c is op(a, b) mod 2^64."""
    parties = _expanded(n)
    for j, spec in enumerate(SPECS):
        if not isinstance(spec, TripleSpec):
            continue
        mats = [as_triple(p[j]) for p in parties]
        a = reconstruct([m.a for m in mats])
        b = reconstruct([m.b for m in mats])
        c = reconstruct([m.c for m in mats])
        assert a.shape == spec.x_shape and b.shape == spec.y_shape and c.shape == spec.z_shape
        assert torch.equal(c, apply_bilinear(spec.op, a, b, spec.conv))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_truncation_masks_are_consistent(n: int) -> None:
    """The shared top bit and shifted low bits belong to the shared r."""
    mats = [as_truncation(p[2]) for p in _expanded(n)]
    r = reconstruct([m.r for m in mats])
    assert torch.equal(reconstruct([m.r_top for m in mats]), top_bit(r))
    want = logical_shift(low_bits(r), 16)
    assert torch.equal(reconstruct([m.r_low_shifted for m in mats]), want)


@pytest.mark.parametrize("n", [2, 3])
def test_only_the_last_party_gets_explicit_tensors(n: int) -> None:
    """Parties 0..n-2 receive one seed per batch; the last gets c (and truncation shares)."""
    bundles = Dealer().deal(SPECS, n)
    assert all(b.explicit == () for b in bundles[:-1])
    assert len(bundles[-1].explicit) == 5
    assert len({b.seed for b in bundles}) == n
    assert all(b.party == i and b.n_parties == n for i, b in enumerate(bundles))


def test_expansion_is_deterministic() -> None:
    """Expanding the same bundle twice gives the same tensors (seeds, not fresh draws)."""
    bundle = Dealer().deal(SPECS, 3)[0]
    first, second = expand_material(bundle), expand_material(bundle)
    for x, y in zip(first, second):
        for field in dataclasses.fields(x):
            assert torch.equal(getattr(x, field.name), getattr(y, field.name))


def test_triple_shares_are_uniform() -> None:
    """Each party's share of a, and the masked c of the last party, look uniform."""
    spec = TripleSpec(BilinearOp.MUL, (1 << 16,), (1 << 16,))
    for bundle in Dealer().deal([spec], 2):
        (triple,) = expand_material(bundle)
        assert isinstance(triple, TripleShares)
        assert looks_uniform(triple.a) and looks_uniform(triple.c)


def test_dealer_seed_source_is_injectable() -> None:
    """A fixed seed source makes dealing reproducible (for tests only)."""
    dealer = Dealer(seed_source=lambda: Seed(bytes(16)))
    one, two = dealer.deal(SPECS, 2), dealer.deal(SPECS, 2)
    assert all(torch.equal(x, y) for x, y in zip(one[1].explicit, two[1].explicit))


def test_material_kinds_are_checked() -> None:
    """A truncation mask where a triple is expected (or the reverse) raises MaterialError."""
    parties = _expanded(2)
    with pytest.raises(MaterialError, match="Beaver triple"):
        as_triple(parties[0][2])
    with pytest.raises(MaterialError, match="truncation mask"):
        as_truncation(parties[0][0])


def test_spec_validation() -> None:
    """Undefined products, bad shapes, oversize requests and bad bits raise MaterialError."""
    with pytest.raises(MaterialError, match="matmul of shapes"):
        TripleSpec(BilinearOp.MATMUL, (3, 4), (5, 2))
    with pytest.raises(MaterialError):
        TripleSpec(BilinearOp.MUL, (3,), (4,))
    with pytest.raises(MaterialError):
        TripleSpec(BilinearOp.MUL, (-1,), (1,))
    with pytest.raises(MaterialError, match="over the limit"):
        TripleSpec(BilinearOp.MUL, (MAX_MATERIAL_ELEMENTS + 1,), (1,))
    with pytest.raises(MaterialError):
        TripleSpec(BilinearOp.MATMUL, (2, 2), (2, 2), ConvParams())
    with pytest.raises(MaterialError):
        TripleSpec(BilinearOp.CONV2D, (1, 2, 4, 4), (1, 3, 3, 3), ConvParams())
    with pytest.raises(MaterialError, match="group"):
        TripleSpec(BilinearOp.CONV2D, (1, 4, 4, 4), (3, 2, 3, 3), ConvParams(groups=2))
    with pytest.raises(MaterialError, match="4-d"):
        TripleSpec(BilinearOp.CONV2D, (4, 4, 4), (3, 4, 3, 3), ConvParams())
    with pytest.raises(MaterialError):
        TripleSpec(BilinearOp.CONV2D, (1, 1, 2, 2), (1, 1, 3, 3), ConvParams())
    for bits in (0, 63):
        with pytest.raises(MaterialError):
            TruncationSpec((2,), bits)


def test_bundle_validation() -> None:
    """Bundles with a bad party, seed, or explicit tensors raise typed errors."""
    good = Dealer().deal(SPECS, 2)[1]
    with pytest.raises(PartyError):
        dataclasses.replace(good, party=2)
    with pytest.raises(SeedError):
        dataclasses.replace(good, seed=b"short")  # type: ignore[arg-type]
    with pytest.raises(MaterialError, match="explicit"):
        dataclasses.replace(good, explicit=good.explicit[:-1])
    with pytest.raises(MaterialError, match="explicit"):
        PartyMaterial(0, 2, SPECS, fresh_seed(), good.explicit)
    wrong = (torch.zeros(3, dtype=torch.int64),) + good.explicit[1:]
    with pytest.raises(RingError, match="explicit tensor 0 has shape"):
        expand_material(dataclasses.replace(good, explicit=wrong))
    floats = (good.explicit[0].double(),) + good.explicit[1:]
    with pytest.raises(RingError):
        expand_material(dataclasses.replace(good, explicit=floats))


@pytest.mark.parametrize("n", [2, 3])
def test_staged_expansion_matches_the_bundle(n: int) -> None:
    """A networked party's staged expansion (masks, product, truncation) equals expand_material's."""
    for bundle in Dealer().deal(SPECS, n):
        whole = expand_material(bundle)
        explicit = iter(bundle.explicit)
        for j, spec in enumerate(SPECS):
            if isinstance(spec, TripleSpec):
                triple = as_triple(whole[j])
                a, b = expand_triple_masks(bundle.seed, spec, j)
                c = next(explicit) if bundle.is_last else expand_triple_product(bundle.seed, spec, j)
                assert torch.equal(a, triple.a) and torch.equal(b, triple.b) and torch.equal(c, triple.c)
            else:
                mask = as_truncation(whole[j])
                pair = (next(explicit), next(explicit)) if bundle.is_last else None
                staged = expand_truncation(bundle.seed, spec, j, pair)
                assert torch.equal(staged.r, mask.r)
                assert torch.equal(staged.r_top, mask.r_top)
                assert torch.equal(staged.r_low_shifted, mask.r_low_shifted)
