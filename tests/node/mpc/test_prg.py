"""AES-CTR ring tensors: determinism, independence of seeds and streams, uniformity."""

from __future__ import annotations

import pytest
import torch

from node.mpc.errors import SeedError
from node.mpc.prg import check_seed, expand_seed, fresh_seed, random_ring
from tests.node.mpc.stats import looks_uniform


def test_known_answer_pins_the_expansion() -> None:
    """AES-128 with a zero key: the first block is 66e94bd4ef8a2c3b... (FIPS-197 style KAT)."""
    first = expand_seed(bytes(16), (2,))
    assert [v % 2**64 for v in first.tolist()] == [0x3B2C8AEFD44BE966, 0x2E2B34CA59FA4C88]


def test_same_seed_same_tensor() -> None:
    """A seed expands identically every time, whatever the shape split."""
    seed = fresh_seed()
    whole = expand_seed(seed, (1000, 300))
    assert torch.equal(whole, expand_seed(seed, (1000, 300)))
    assert torch.equal(whole.flatten()[:12345], expand_seed(seed, (12345,)))


def test_different_seeds_and_streams_differ() -> None:
    """Two seeds, or two streams of one seed, give unrelated tensors."""
    a, b = fresh_seed(), fresh_seed()
    assert a != b
    assert not torch.equal(expand_seed(a, (64,)), expand_seed(b, (64,)))
    streams = [expand_seed(a, (64,), stream=s) for s in (0, 1, 2**40)]
    assert len({tuple(t.tolist()) for t in streams}) == 3
    assert (expand_seed(a, (10_000,)) == expand_seed(a, (10_000,), stream=1)).sum() == 0


def test_32_byte_seeds_use_aes_256() -> None:
    """32-byte seeds work and differ from their 16-byte prefix."""
    seed = fresh_seed(32)
    assert len(seed) == 32
    assert not torch.equal(expand_seed(seed, (8,)), expand_seed(seed[:16], (8,)))


def test_lengths_not_multiple_of_the_chunk() -> None:
    """Sizes around the internal 256 KiB piece boundary are consistent prefixes."""
    seed = fresh_seed()
    long = expand_seed(seed, (3 * 32768 + 5,))
    for n in (0, 1, 32767, 32768, 32769, 65535 + 2):
        assert torch.equal(expand_seed(seed, (n,)), long[:n])


def test_random_ring_is_fresh_and_uniform() -> None:
    """random_ring differs on each call and passes the uniformity checks."""
    a, b = random_ring((1 << 16,)), random_ring((1 << 16,))
    assert not torch.equal(a, b)
    assert looks_uniform(a) and looks_uniform(b)


def test_expansion_is_writable_and_right_shape() -> None:
    """The result is an ordinary int64 tensor of the requested shape."""
    t = expand_seed(fresh_seed(), (2, 3, 4))
    assert t.shape == (2, 3, 4) and t.dtype == torch.int64 and t.is_contiguous()
    t += 1


@pytest.mark.parametrize("bad", [b"", bytes(15), bytes(24), bytes(33)])
def test_bad_seed_lengths_raise(bad: bytes) -> None:
    """Seeds must be 16 or 32 bytes."""
    with pytest.raises(SeedError, match="16 or 32 bytes"):
        expand_seed(bad, (1,))


def test_bad_seed_arguments_raise() -> None:
    """Non-bytes seeds, bad sizes, negative dimensions and streams raise SeedError."""
    with pytest.raises(SeedError):
        check_seed("0" * 16)
    with pytest.raises(SeedError):
        fresh_seed(20)
    with pytest.raises(SeedError):
        expand_seed(fresh_seed(), (-1,))
    with pytest.raises(SeedError):
        expand_seed(fresh_seed(), (1,), stream=-1)
