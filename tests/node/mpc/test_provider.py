"""Material providers: specs map to kinds, kinds to providers; the dealer's two phases make its bundles."""

from __future__ import annotations

import pytest
import torch

from node.mpc.dealer import Dealer
from node.mpc.errors import MaterialError
from node.mpc.material import PartyMaterial, TripleSpec, TruncationSpec, as_triple, expand_material
from node.mpc.prg import Seed
from node.mpc.provider import MaterialKind, MaterialProvider, Providers, kind_of
from node.mpc.ring import BilinearOp, apply_bilinear
from node.mpc.shares import reconstruct

SPECS = (
    TripleSpec(BilinearOp.MUL, (4, 5), (5,)),
    TruncationSpec((4, 5), 16),
    TripleSpec(BilinearOp.MATMUL, (3, 7), (7, 2)),
)


def counting_seeds() -> Dealer:
    """A dealer whose seeds are 0, 1, 2, ... (reproducible, for tests only)."""
    counter = iter(range(1 << 30))
    return Dealer(seed_source=lambda: Seed(next(counter).to_bytes(16, "little")))


def test_beaver_specs_are_beaver_material() -> None:
    """Triples and truncation masks are both dealt by the Beaver provider."""
    assert {kind_of(spec) for spec in SPECS} == {MaterialKind.BEAVER}
    with pytest.raises(MaterialError, match="not a material spec"):
        kind_of("triple")  # type: ignore[arg-type]


def test_a_batch_finds_the_provider_of_its_kind() -> None:
    """Providers look a batch's provider up by the kind of its specs."""
    dealer: MaterialProvider = Dealer()
    assert Providers(dealer).for_specs(SPECS) is dealer


def test_a_kind_nobody_deals_is_refused() -> None:
    """No provider for the batch's kind (or no spec at all): MaterialError, naming the kind."""
    with pytest.raises(MaterialError, match="deals no beaver material"):
        Providers().for_specs(SPECS)
    with pytest.raises(MaterialError, match="one kind"):
        Providers(Dealer()).for_specs(())


def test_two_providers_of_one_kind_are_a_wiring_bug() -> None:
    """The runtime wires one provider per kind; a second is our own bug (assert)."""
    with pytest.raises(AssertionError):
        Providers(Dealer(), Dealer())


@pytest.mark.parametrize("n", [2, 3])
def test_the_two_phases_alone_give_valid_triples(n: int) -> None:
    """Seeds, then the dependent tensors where the provider says, as a service sends them: c = a * b."""
    dealer = counting_seeds()
    seeds = dealer.seeds(n)
    dependent = dealer.dependent(SPECS, seeds)
    assert list(dependent) == [n - 1]  # a Beaver dealer's second phase goes to the last party only
    parties = [
        expand_material(PartyMaterial(i, n, SPECS, seeds[i], dependent.get(i, ()))) for i in range(n)
    ]
    for j, spec in enumerate(SPECS):
        if isinstance(spec, TripleSpec):
            mats = [as_triple(p[j]) for p in parties]
            a, b = reconstruct([m.a for m in mats]), reconstruct([m.b for m in mats])
            assert torch.equal(reconstruct([m.c for m in mats]), apply_bilinear(spec.op, a, b, spec.conv))


def test_the_dealers_cost_is_its_input_elements() -> None:
    """cost() counts a triple's x and y and a mask's shape: what decides where dealing runs."""
    assert Dealer().cost(SPECS) == (20 + 5) + 20 + (21 + 14)
