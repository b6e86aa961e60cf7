"""DReLU and ReLU by arithmetic-to-binary conversion, for 2, 3 and 5 parties, against plain torch."""

from __future__ import annotations

import pytest
import torch

from node.mpc.a2b import BinaryDealer, BinarySpec, opened_words, party_protocol, round_count
from node.mpc.binary import unpack, xor_all
from node.mpc.encoding import FixedPointEncoder
from node.mpc.errors import MaterialError, PartyError, RingError
from node.mpc.prg import random_ring
from node.mpc.rounds import Opened, RoundProtocol, run_local
from node.mpc.shares import reconstruct, split
from tests.node.mpc.stats import looks_uniform


def _protocols(spec: BinarySpec, x: torch.Tensor, n: int) -> list[RoundProtocol]:
    deal = BinaryDealer().deal([spec], n)
    shares = split(x, n)
    return [party_protocol(spec, i, n, seed, explicit, shares[i]) for i, (seed, explicit) in enumerate(deal)]


def _run(x: torch.Tensor, n: int, width: int, relu: bool = False) -> tuple[torch.Tensor, int]:
    spec = BinarySpec(tuple(x.shape), width, relu)
    results, rounds = run_local(_protocols(spec, x, n))
    return reconstruct(results), rounds


def _signed_low_bits(x: torch.Tensor, width: int) -> torch.Tensor:
    """The signed value of the low ``width`` bits of each element."""
    return (x << (64 - width)) >> (64 - width)


def _expected(x: torch.Tensor, width: int, relu: bool) -> torch.Tensor:
    sign = (_signed_low_bits(x, width) >= 0).to(torch.int64)
    return x * sign if relu else sign


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("width", range(2, 9))
@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_value_of_small_widths(n: int, width: int, relu: bool) -> None:
    """Every representable value, three times, gives the plain sign (or ReLU) in the planned rounds."""
    x = torch.arange(-(1 << (width - 1)), 1 << (width - 1), dtype=torch.int64).repeat(3)
    result, rounds = _run(x, n, width, relu)
    assert torch.equal(result, _expected(x, width, relu))
    assert rounds == round_count(BinarySpec(tuple(x.shape), width, relu), n)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_random_and_edge_values_of_wide_widths(n: int, width: int, relu: bool) -> None:
    """Random values and the range edges (min, -1, 0, max) at widths 32 and 64."""
    low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
    edges = torch.tensor([low, low + 1, -1, 0, 1, high - 1, high], dtype=torch.int64)
    x = torch.cat([_signed_low_bits(random_ring((2996,)), width), edges]).view(-1, 7)
    result, _ = _run(x, n, width, relu)
    assert torch.equal(result, _expected(x, width, relu))


@pytest.mark.parametrize("n", [2, 3])
def test_only_the_low_width_bits_count(n: int) -> None:
    """A value outside the range is compared as the signed value of its low bits."""
    x = torch.tensor([(1 << 20) + 5, (1 << 20) - 5, -(1 << 16) + 3, (3 << 16) - 1], dtype=torch.int64)
    result, _ = _run(x, n, 16)
    assert result.tolist() == [1, 0, 1, 0]
    assert torch.equal(result, _expected(x, 16, False))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_relu_of_fixed_point_values(n: int) -> None:
    """ReLU of fixed-point values is exactly the encoding of torch.relu."""
    encoder = FixedPointEncoder(16)
    values = torch.cat([torch.randn(2000) * 100, torch.tensor([0.0, -0.0, 1e-4, -1e-4, 3.5, -3.5])])
    result, _ = _run(encoder.encode(values), n, 40, relu=True)
    assert torch.equal(result, encoder.encode(torch.relu(values)))
    assert torch.allclose(encoder.decode(result, torch.float64), torch.relu(values).double(), atol=2**-16)


@pytest.mark.parametrize(("n", "rounds"), [(2, 7), (3, 8), (4, 9), (5, 10)])
def test_round_counts_at_width_32(n: int, rounds: int) -> None:
    """Rounds as documented: 7 for two parties, one more per carry-save level."""
    for relu in (False, True):
        spec = BinarySpec((5,), 32, relu)
        assert round_count(spec, n) == rounds
        assert _run(torch.arange(-2, 3, dtype=torch.int64), n, 32, relu)[1] == rounds
    assert round_count(BinarySpec((5,), 64), 2) == 8
    assert round_count(BinarySpec((5,), 2), 2) == 2


def test_opened_words_for_a_tensor() -> None:
    """Packed AND words twice (e and f), the bit e 64 to a word, x - r for ReLU."""
    spec = BinarySpec((64, 100), 32)
    assert opened_words(spec, 2) == 2 * (3200 + 3200 + 1600 + 800 + 400 + 100) + 100
    assert opened_words(spec, 3) == 2 * (3200 + 3200 + 3200 + 1600 + 800 + 400 + 100) + 100
    assert opened_words(BinarySpec((64, 100), 32, relu=True), 3) == opened_words(spec, 3) + 6400
    x = torch.arange(-3200, 3200, dtype=torch.int64).view(64, 100)
    logs: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in range(3)]
    run_local([_recorded(p, log) for p, log in zip(_protocols(spec, x, 3), logs)])
    assert sum(t.numel() for values in logs[0] for t in values) == opened_words(spec, 3)


def _recorded(protocol: RoundProtocol, log: list[tuple[torch.Tensor, ...]]) -> RoundProtocol:
    """``protocol`` unchanged, with every opening it yields appended to ``log``."""
    try:
        opening = next(protocol)
        while True:
            log.append(opening.values)
            opening = protocol.send((yield opening))
    except StopIteration as stop:
        result: torch.Tensor = stop.value
        return result


def test_every_opening_looks_uniform_whatever_the_input() -> None:
    """Party 0's openings of a constant input: uniform words, and a balanced bit e."""
    x = torch.full((20000,), 12345, dtype=torch.int64)
    spec = BinarySpec(tuple(x.shape), 32, relu=True)
    logs: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in range(3)]
    results, _ = run_local([_recorded(p, log) for p, log in zip(_protocols(spec, x, 3), logs)])
    assert torch.equal(reconstruct(results), x)
    *ands, _ = logs[0]
    assert looks_uniform(torch.cat([tensor.flatten() for values in ands for tensor in values]))
    e = unpack(xor_all([log[-1][0] for log in logs]), tuple(x.shape), 1).double()
    assert abs(float(e.mean()) - 0.5) < 6 * 0.5 / e.numel() ** 0.5


def test_several_specs_of_one_batch() -> None:
    """Spec index and explicit slices: each comparison uses its own streams."""
    n = 3
    specs = [BinarySpec((50,), 16), BinarySpec((2, 5), 8, relu=True)]
    xs = [torch.randint(-(1 << 15), 1 << 15, (50,)), torch.randint(-128, 128, (2, 5))]
    deal = BinaryDealer().deal(specs, n)
    shares = [split(x, n) for x in xs]
    protocols: list[list[RoundProtocol]] = [[], []]
    for party, (seed, explicit) in enumerate(deal):
        cut = len(specs[0].explicit_shapes(party, n))
        slices = [explicit[:cut], explicit[cut:]]
        for j, spec in enumerate(specs):
            protocols[j].append(party_protocol(spec, party, n, seed, slices[j], shares[j][party], index=j))
    for j, spec in enumerate(specs):
        results, _ = run_local(protocols[j])
        assert torch.equal(reconstruct(results), _expected(xs[j], spec.width, spec.relu))


def test_bad_inputs_are_refused_before_any_round() -> None:
    """Bad shares, explicit tensors and party numbers raise when the protocol is built."""
    spec = BinarySpec((4,), 8)
    (seed0, _), (seed1, explicit) = BinaryDealer().deal([spec], 2)
    x = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(RingError, match="int64"):
        party_protocol(spec, 0, 2, seed0, (), x.float())
    with pytest.raises(RingError, match="shape"):
        party_protocol(spec, 0, 2, seed0, (), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(RingError, match="shape"):
        party_protocol(spec, 1, 2, seed1, (explicit[0][:-1], explicit[1]), x)
    with pytest.raises(MaterialError, match="explicit"):
        party_protocol(spec, 1, 2, seed1, (), x)
    with pytest.raises(PartyError):
        party_protocol(spec, 2, 2, seed1, explicit, x)
    with pytest.raises(PartyError):
        party_protocol(spec, 0, 1, seed0, (), x)


def test_a_malformed_opening_from_a_peer_is_refused() -> None:
    """A peer opening the wrong shape or number of tensors is refused with its index."""
    spec = BinarySpec((4,), 8)
    (seed0, _), _ = BinaryDealer().deal([spec], 2)
    protocol = party_protocol(spec, 0, 2, seed0, (), torch.zeros(4, dtype=torch.int64))
    mine = next(protocol).values
    bad: Opened = [mine, (mine[0][:1],)]
    with pytest.raises(RingError, match="party 1"):
        protocol.send(bad)
    protocol = party_protocol(spec, 0, 2, seed0, (), torch.zeros(4, dtype=torch.int64))
    mine = next(protocol).values
    with pytest.raises(PartyError, match="party 1 opened 2"):
        protocol.send([mine, (mine[0], mine[0])])


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,)])
def test_scalars_and_empty_tensors(shape: tuple[int, ...]) -> None:
    """Scalars and empty tensors compare like any other shape."""
    x = torch.full(shape, -7, dtype=torch.int64)
    for relu in (False, True):
        result, rounds = _run(x, 3, 32, relu)
        assert result.shape == shape and rounds == 8
        assert torch.equal(result, _expected(x, 32, relu))
