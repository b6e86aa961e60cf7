"""Secure aggregation's arithmetic against plain FedAvg: encoding, bounds, shares, decoding."""

from __future__ import annotations

import pytest
import torch

from node.fl.aggregate import fedavg
from node.fl.secure import (
    UpdateOutOfRange,
    add_shares,
    average_error_bound,
    decode_average,
    encode_update,
    reconstruct_sum,
    share_tensors,
    shapes_of,
    split_update,
    update_limit,
)
from node.mpc import NonFiniteValue
from protocol.errors import BadRequest
from protocol.secagg import DEFAULT_SECAGG_PRECISION, MAX_ROUND_OWNERS

F = DEFAULT_SECAGG_PRECISION


def _state(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=generator) * scale,
        "b": torch.randn(4, generator=generator, dtype=torch.float64) * scale,
        "num_batches_tracked": torch.tensor(7 + seed),
    }


def _secure_average(states: list[dict[str, torch.Tensor]], samples: list[int], parties: int,
                    precision: int = F) -> dict[str, torch.Tensor]:
    """Every owner splits among ``parties``; each party adds its shares; the trainer adds the sums."""
    per_party: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(parties)]
    for owner, (state, n) in enumerate(zip(states, samples)):
        ring = encode_update(state, n, precision)
        for party, part in enumerate(split_update(ring, parties, explicit=owner % parties)):
            per_party[party].append(share_tensors(shapes_of(ring), part))
    total = reconstruct_sum([add_shares(shares) for shares in per_party])
    return decode_average(total, states[0], sum(samples), precision)


@pytest.mark.parametrize("parties", [2, 3, 5])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_secure_average_equals_fedavg_within_the_derived_bound(parties: int, scale: float) -> None:
    """Across magnitudes and party counts, the decoded average is plain FedAvg within k*2^-(f+1)/N."""
    states = [_state(seed, scale) for seed in range(4)]
    samples = [150, 1, 77, 20_000]
    secure = _secure_average(states, samples, parties)
    plain = fedavg(states, samples)
    bound = average_error_bound(len(states), sum(samples), F)
    assert torch.allclose(secure["b"], plain["b"], rtol=0, atol=bound)
    assert torch.allclose(secure["w"], plain["w"], rtol=2**-23, atol=bound)
    assert torch.equal(secure["num_batches_tracked"], plain["num_batches_tracked"])
    assert secure["w"].dtype == torch.float32 and secure["num_batches_tracked"].dtype == torch.int64


def test_integer_buffers_round_like_aggregate() -> None:
    """num_batches_tracked: the weighted mean rounded to nearest, ties to even, as node.fl.aggregate."""
    states = [{"n": torch.tensor(1)}, {"n": torch.tensor(2)}]
    assert _secure_average(states, [1, 1], 2)["n"].item() == fedavg(states, [1, 1])["n"].item() == 2
    assert _secure_average(states, [3, 1], 2)["n"].item() == fedavg(states, [3, 1])["n"].item() == 1


def test_the_largest_allowed_updates_of_every_owner_sum_without_wrapping() -> None:
    """256 owners just under the per-owner limit: the ring sum decodes to the true sum."""
    just_under = update_limit(F) - 1.0
    ring = encode_update({"w": torch.tensor([just_under, -just_under], dtype=torch.float64)}, 1, F)
    total = add_shares([ring] * MAX_ROUND_OWNERS)
    decoded = total["w"].to(torch.float64) / 2**F
    assert decoded.tolist() == [just_under * MAX_ROUND_OWNERS, -just_under * MAX_ROUND_OWNERS]


def test_updates_beyond_the_bound_or_not_finite_are_refused() -> None:
    """samples x weight at the limit, NaN, and integer buffers too large: typed errors, no shares."""
    limit = update_limit(F)
    assert limit == 2.0 ** (55 - F)
    with pytest.raises(UpdateOutOfRange, match="beyond"):
        encode_update({"w": torch.tensor([limit / 1000], dtype=torch.float64)}, 1000, F)
    with pytest.raises(UpdateOutOfRange):  # far beyond: still this error, not the ring encoder's
        encode_update({"w": torch.tensor([1e20], dtype=torch.float64)}, 1, F)
    with pytest.raises(NonFiniteValue):
        encode_update({"w": torch.tensor([float("nan")])}, 10, F)
    with pytest.raises(NonFiniteValue):
        encode_update({"w": torch.tensor([1.0, float("inf")])}, 10, F)
    with pytest.raises(UpdateOutOfRange):
        encode_update({"n": torch.tensor(2**50)}, 2**6, F)
    with pytest.raises(BadRequest, match="not averaged"):
        encode_update({"m": torch.tensor([True])}, 1, F)


def test_every_party_but_the_owner_gets_a_seed_and_shares_look_random() -> None:
    """split_update: seeds for the others, explicit rest for one party; the shares add up exactly."""
    ring = encode_update({"w": torch.zeros(1000)}, 5, F)
    parts = split_update(ring, 3, explicit=1)
    assert parts[0].seed is not None and parts[2].seed is not None and parts[1].seed is None
    assert parts[0].values == {} and list(parts[1].values) == ["w"]
    shares = [share_tensors(shapes_of(ring), p) for p in parts]
    assert torch.equal(reconstruct_sum(shares)["w"], ring["w"])
    # a share of zeros is not zero: its high bit is set about half the time
    negative = (shares[1]["w"] < 0).float().mean().item()
    assert 0.4 < negative < 0.6


def test_bad_splits_and_reconstructions_are_refused() -> None:
    """One party, an explicit index out of range, or a single summed share: BAD_REQUEST."""
    ring = {"w": torch.zeros(2, dtype=torch.int64)}
    with pytest.raises(BadRequest):
        split_update(ring, 1, 0)
    with pytest.raises(BadRequest):
        split_update(ring, 2, 2)
    with pytest.raises(BadRequest):
        reconstruct_sum([ring])
    with pytest.raises(BadRequest, match="different"):
        add_shares([ring, {"w": torch.zeros(3, dtype=torch.int64)}])
