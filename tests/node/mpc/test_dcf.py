"""The distributed comparison function: both parties' outputs add up to beta * [y < alpha]."""

from __future__ import annotations

import secrets

import numpy
import pytest
import torch

from node.mpc import dcf
from node.mpc.dcf import DcfKey, check_bits, dcf_eval, dcf_gen, dcf_key_bytes
from node.mpc.errors import MaterialError
from tests.node.mpc.stats import looks_uniform

U64 = numpy.uint64


def _words(count: int) -> numpy.ndarray:
    return numpy.frombuffer(secrets.token_bytes(8 * count), dtype=U64).copy()


def _roots(count: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    return _words(2 * count).reshape(count, 2), _words(2 * count).reshape(count, 2)


def _shared(bits: int, alpha: numpy.ndarray, beta: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
    roots = _roots(alpha.shape[0])
    key = dcf_gen(bits, alpha, beta, roots)
    return dcf_eval(0, key, roots[0], y) + dcf_eval(1, key, roots[1], y)


def _expected(alpha: numpy.ndarray, beta: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
    return numpy.where(y < alpha, beta, U64(0))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6])
def test_every_input_against_every_alpha(bits: int) -> None:
    """Exhaustive: each (alpha, y) pair of ``bits`` bits is one key, alpha 0 and 2^bits - 1 included."""
    values = numpy.arange(1 << bits, dtype=U64)
    alpha = numpy.repeat(values, values.size)
    y = numpy.tile(values, values.size)
    beta = _words(alpha.size)
    assert numpy.array_equal(_shared(bits, alpha, beta, y), _expected(alpha, beta, y))


@pytest.mark.parametrize("bits", [31, 63])
def test_random_keys_on_wide_inputs(bits: int) -> None:
    top = (1 << bits) - 1
    count = 3000
    alpha = _words(count) & U64(top)
    alpha[:4] = [0, top, 1, top - 1]
    y = _words(count) & U64(top)
    # Inputs next to alpha, where one wrong level would show.
    y[4:1004] = alpha[4:1004]
    y[1004:2004] = alpha[1004:2004] - U64(1)
    y[2004:2504] = alpha[2004:2504] + U64(1)
    y[2504:2508] = [0, top, 0, top]
    y &= U64(top)
    beta = _words(count)
    assert numpy.array_equal(_shared(bits, alpha, beta, y), _expected(alpha, beta, y))


def test_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Elements are processed in chunks: a size that does not divide N gives the same outputs."""
    bits, count = 12, 1000
    alpha, y, beta = _words(count) & U64(4095), _words(count) & U64(4095), _words(count)
    roots = _roots(count)
    whole = dcf_gen(bits, alpha, beta, roots)
    shares = [dcf_eval(b, whole, roots[b], y) for b in (0, 1)]
    monkeypatch.setattr(dcf, "_CHUNK", 77)
    monkeypatch.setattr(dcf, "_GEN_CHUNK", 53)
    chunked = dcf_gen(bits, alpha, beta, roots)
    for name in ("seed_cw", "value_cw", "control_cw", "final_cw"):
        assert numpy.array_equal(getattr(whole, name), getattr(chunked, name))
    assert all(numpy.array_equal(shares[b], dcf_eval(b, chunked, roots[b], y)) for b in (0, 1))


def test_evaluation_leaves_its_inputs_alone_and_returns_fresh_shares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The evaluation reuses its own buffers across chunks, never the caller's arrays."""
    monkeypatch.setattr(dcf, "_CHUNK", 40)
    bits, count = 9, 300
    alpha, y, beta = _words(count) & U64(511), _words(count) & U64(511), _words(count)
    roots = _roots(count)
    key = dcf_gen(bits, alpha, beta, roots)
    before = [a.copy() for a in (key.seed_cw, key.value_cw, key.control_cw, key.final_cw, y)]
    root_before = [r.copy() for r in roots]
    first = [dcf_eval(b, key, roots[b], y) for b in (0, 1)]
    second = [dcf_eval(b, key, roots[b], y) for b in (0, 1)]
    after = [key.seed_cw, key.value_cw, key.control_cw, key.final_cw, y]
    assert all(numpy.array_equal(old, new) for old, new in zip(before, after))
    assert all(numpy.array_equal(old, new) for old, new in zip(root_before, roots))
    assert numpy.array_equal(first[0] + first[1], _expected(alpha, beta, y))
    assert all(numpy.array_equal(first[b], second[b]) for b in (0, 1))
    assert not numpy.shares_memory(first[0], second[0])


def test_a_party_share_and_the_correction_words_look_uniform() -> None:
    """With beta = 1 the result is one bit, yet each party's share is uniform over the ring."""
    bits, count = 31, 30000
    alpha, y = _words(count) & U64((1 << 31) - 1), _words(count) & U64((1 << 31) - 1)
    roots = _roots(count)
    key = dcf_gen(bits, alpha, numpy.ones(count, dtype=U64), roots)
    for party in (0, 1):
        share = dcf_eval(party, key, roots[party], y)
        assert looks_uniform(torch.from_numpy(share.view(numpy.int64)))
    for words in (key.seed_cw[5, :, 1], key.value_cw[7], key.final_cw):
        assert looks_uniform(torch.from_numpy(numpy.ascontiguousarray(words).view(numpy.int64)))


def test_the_key_is_a_function_of_the_roots() -> None:
    """The dealer and a party derive nothing at random: same roots, same key."""
    count = 50
    alpha, beta, roots = _words(count) & U64(255), _words(count), _roots(count)
    first, second = dcf_gen(8, alpha, beta, roots), dcf_gen(8, alpha, beta, roots)
    assert numpy.array_equal(first.seed_cw, second.seed_cw)
    assert numpy.array_equal(first.final_cw, second.final_cw)


def test_key_sizes() -> None:
    assert dcf_key_bytes(31) == 768 and dcf_key_bytes(63) == 1536
    key = dcf_gen(31, _words(10) & U64(7), _words(10), _roots(10))
    assert sum(a.nbytes for a in (key.seed_cw, key.value_cw, key.control_cw, key.final_cw)) == 7680


@pytest.mark.parametrize("bits", [0, 64, -1, True, 3.0])
def test_input_lengths_outside_1_to_63_are_refused(bits: object) -> None:
    with pytest.raises(MaterialError, match="DCF input"):
        check_bits(bits)  # type: ignore[arg-type]


def test_malformed_keys_and_inputs_are_refused() -> None:
    key = dcf_gen(4, _words(3) & U64(15), _words(3), _roots(3))
    with pytest.raises(MaterialError, match="seed_cw has shape"):
        DcfKey(4, key.seed_cw[:3], key.value_cw, key.control_cw, key.final_cw)
    with pytest.raises(MaterialError, match="value_cw must be a uint64"):
        DcfKey(4, key.seed_cw, key.value_cw.view(numpy.int64), key.control_cw, key.final_cw)
    with pytest.raises(MaterialError, match="parties 0 and 1"):
        dcf_eval(2, key, _roots(3)[0], _words(3))
    with pytest.raises(MaterialError, match="does not match"):
        dcf_eval(0, key, _roots(4)[0], _words(3))
