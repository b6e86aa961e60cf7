"""Distributed comparison functions: two-party keys for f(y) = beta if y < alpha else 0.

Owns the vectorised DCF of Boyle, Gilboa, Ishai, Kolobov, Tsaban and Ghazi
("Function Secret Sharing for Mixed-Mode and Fixed-Point Secure
Computation", Eurocrypt 2021, Fig. 1/3; as in AriaNN, PoPETs 2022): the
dealer's key generation :func:`dcf_gen` and a party's evaluation
:func:`dcf_eval`, over N independent keys at once (element e has its own
alpha_e and beta_e).  Inputs are ``bits``-bit unsigned integers
(1 <= bits <= 63) read most significant bit first; outputs are additive
shares in Z/2^64: party 0's and party 1's values add up to
``beta * [y < alpha]`` mod 2^64.  Must not import asyncio, websockets, or
anything of ``node.server`` / ``node.client``.

PRG.  G expands a 128-bit seed with fixed-key AES-128 in Matyas-Meyer-Oseas
form, H(b) = AES_K(b) xor b, K the public constant :data:`AES_KEY`.  The
branch and the output enter as distinct tweaks xored into the block, so
G_d(s) = (H(s ^ T_{d,0}), H(s ^ T_{d,1})): T_{0,0} = 0, T_{0,1} the
constant :data:`_VALUE_TWEAK` (output 1, the value), and the right branch
adds 2^(level's bit position) to both words (T_{1,k} = T_{0,k} xor that),
which evaluation takes from the input itself with one AND; the child seed is the first
block with its low bit cleared (127 bits), the control bit t is that low
bit, the value v is the low 64 bits of the second block (seed CWs, xors of
such seeds, have that low bit 0 too, so a corrected seed keeps t there).  A level of N
elements is one ``cryptography`` ECB ``update_into`` call: evaluation
follows only the public input bit's branch (2 blocks per element and
level), generation needs both branches of both parties (8 blocks).  The
final seed converts to the group by its high 64 bits (its low word lost its
low bit to t).

Key per element, per party.  The root seed (16 bytes) is expanded by each
party from its batch seed, so only the correction words travel, the same
for both parties: per level a seed CW (16 bytes) and a value CW (8 bytes),
plus the left and right control-bit CWs of all levels packed in two int64
words and the final CW (24 bytes): ``24 * bits + 24`` bytes, 768 bytes for
31 levels (width 32), 1536 for 63 levels (width 64).

A key is single use: evaluating it on two inputs reveals nothing new by
itself, but the comparison protocols that use it open ``x + r`` with r tied
to alpha, and a second opening with the same r reveals the difference of the
inputs.  Arrays are numpy ``uint64`` (ring elements as unsigned words);
:mod:`node.mpc.fss` converts to and from torch without copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import MaterialError

__all__ = [
    "AES_KEY",
    "MAX_DCF_BITS",
    "DcfKey",
    "dcf_key_bytes",
    "dcf_gen",
    "dcf_eval",
]

AES_KEY = b"Tessera DCF v1\x00\x00"
"""The public fixed AES-128 key of the PRG (fixed-key MMO needs no secret key)."""
MAX_DCF_BITS = 63
"""Inputs are below 2^63: the control-bit CWs of all levels fit in one int64 word."""

_U64 = numpy.uint64
_ONE = _U64(1)
_ALL_ONES = _U64((1 << 64) - 1)
_NOT_ONE = _U64((1 << 64) - 2)
_CLEAR = numpy.array([_NOT_ONE, _ALL_ONES], dtype=_U64)
"""Clears a block's low bit (the control bit) to leave the 127-bit child seed."""
_VALUE_TWEAK = numpy.array([0x243F6A8885A308D3, 0x13198A2E03707344], dtype=_U64)
"""Xored into the block of output 1 (the value); output 0 (seed and t) has none."""
_MASKS = numpy.array([[0, 0], [(1 << 64) - 1, (1 << 64) - 1]], dtype=_U64)
"""Row t is the (seed-wide) mask of control bit t."""
_CHUNK = 1 << 14
"""Elements evaluated together (measured on 10^5 elements, 31 levels, buffers reused: 2^14
beats 2^13 by ~7% and ties 2^15; fewer, longer numpy calls against a working set near L2)."""
_GEN_CHUNK = 1 << 13
"""Elements generated together (key generation holds four times as many blocks)."""


@dataclass(frozen=True, slots=True)
class DcfKey:
    """The correction words of N keys, the same for both parties (numpy uint64).

    ``seed_cw`` (bits, N, 2), ``value_cw`` (bits, N): one per level, level 0
    first; ``control_cw`` (2, N): left CWs then right CWs, bit ``bits-1-i``
    of an element's word is level i's; ``final_cw`` (N,).
    """

    bits: int
    seed_cw: numpy.ndarray
    value_cw: numpy.ndarray
    control_cw: numpy.ndarray
    final_cw: numpy.ndarray

    def __post_init__(self) -> None:
        check_bits(self.bits)
        n = self.final_cw.shape[0] if self.final_cw.ndim == 1 else -1
        expected = {
            "seed_cw": (self.bits, n, 2),
            "value_cw": (self.bits, n),
            "control_cw": (2, n),
            "final_cw": (n,),
        }
        for name, shape in expected.items():
            array = getattr(self, name)
            if not isinstance(array, numpy.ndarray) or array.dtype != _U64:
                raise MaterialError(f"DCF {name} must be a uint64 array", {"field": name})
            if array.shape != shape:
                raise MaterialError(
                    f"DCF {name} has shape {list(array.shape)}, expected {list(shape)}",
                    {"field": name},
                )

    @property
    def size(self) -> int:
        """The number of keys (elements)."""
        return int(self.final_cw.shape[0])


def check_bits(bits: int) -> int:
    """``bits`` if it is an input length in [1, MAX_DCF_BITS], else :class:`MaterialError`."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_DCF_BITS:
        raise MaterialError(
            f"a DCF input has between 1 and {MAX_DCF_BITS} bits, got {bits}", {"bits": str(bits)}
        )
    return bits


def dcf_key_bytes(bits: int) -> int:
    """Bytes of correction words per element (each party receives them all)."""
    return 24 * check_bits(bits) + 24


class _Prg:
    """Fixed-key AES-MMO over contiguous uint64 buffers of whole blocks."""

    __slots__ = ("_encryptor",)

    def __init__(self) -> None:
        self._encryptor = Cipher(algorithms.AES(AES_KEY), modes.ECB()).encryptor()

    def hash_into(self, blocks: numpy.ndarray, out: numpy.ndarray) -> None:
        """out[:len] = AES_K(blocks) xor blocks; ``out`` has one spare block (update_into's slack)."""
        self._encryptor.update_into(blocks.data.cast("B"), out.data.cast("B"))
        body = out[: blocks.size].reshape(blocks.shape)
        numpy.bitwise_xor(body, blocks, out=body)

    def encrypt_into(self, blocks: numpy.ndarray, out: numpy.ndarray) -> None:
        """out[:len] = AES_K(blocks), without the MMO xor (the caller applies it where it reads)."""
        self._encryptor.update_into(blocks.data.cast("B"), out.data.cast("B"))


def dcf_gen(
    bits: int, alpha: numpy.ndarray, beta: numpy.ndarray, roots: tuple[numpy.ndarray, numpy.ndarray]
) -> DcfKey:
    """The correction words of keys for ``beta * [y < alpha]`` (alpha < 2^bits, both shape (N,)).

    ``roots`` are the parties' root seeds, (N, 2) uint64 each (party 0's
    control bit starts at 0, party 1's at 1).  The dealer computes both
    branches of both parties at every level, in chunks of elements.
    """
    check_bits(bits)
    n = alpha.shape[0]
    key = DcfKey(
        bits,
        numpy.empty((bits, n, 2), dtype=_U64),
        numpy.empty((bits, n), dtype=_U64),
        numpy.zeros((2, n), dtype=_U64),
        numpy.empty(n, dtype=_U64),
    )
    prg = _Prg()
    for start, stop in _chunks(n, _GEN_CHUNK):
        _gen_chunk(key, alpha, beta, roots, start, stop, prg)
    return key


def _chunks(n: int, most: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``most`` elements covering [0, n), of near equal sizes."""
    count = max(1, -(-n // most))
    size = -(-n // count)
    return [(start, min(n, start + size)) for start in range(0, n, size)] if n else []


def _gen_chunk(
    key: DcfKey,
    alpha: numpy.ndarray,
    beta: numpy.ndarray,
    roots: tuple[numpy.ndarray, numpy.ndarray],
    start: int,
    stop: int,
    prg: _Prg,
) -> None:
    """Fills elements [start, stop) of ``key``; party b's arrays are index b of a leading axis."""
    bits = key.bits
    m = stop - start
    seeds = numpy.stack([roots[0][start:stop], roots[1][start:stop]])  # (2, m, 2)
    masks = numpy.zeros((2, m, 2), dtype=_U64)  # all ones where the party's t is 1
    masks[1] = _ALL_ONES
    controls = numpy.array([0, 1], dtype=_U64)[:, None].repeat(m, axis=1)  # (2, m)
    walk = numpy.repeat(alpha[start:stop] << _U64(64 - bits), 2).reshape(m, 2).view(numpy.int64)
    value_tweak = numpy.tile(_VALUE_TWEAK, (2, m, 1))
    clear = numpy.tile(_CLEAR, (2, m, 1))
    blocks = numpy.empty((4, 2, m, 2), dtype=_U64)
    out = numpy.empty(blocks.size + 2, dtype=_U64)
    hashed = out[: blocks.size].reshape(blocks.shape)
    beta_part = beta[start:stop]
    v_alpha = numpy.zeros(m, dtype=_U64)
    control_cw = key.control_cw[:, start:stop]
    for level in range(bits):
        shift = _U64(bits - 1 - level)
        lose_left2 = (walk >> 63).view(_U64)  # (m, 2): all ones where alpha's bit is 1
        numpy.left_shift(walk, 1, out=walk)
        lose_left = lose_left2[:, 0].copy()
        a = lose_left & _ONE
        right = _U64(1) << shift  # the right branch's tweak, in both words
        blocks[0] = seeds
        numpy.bitwise_xor(seeds, value_tweak, out=blocks[1])
        numpy.bitwise_xor(seeds, right, out=blocks[2])
        numpy.bitwise_xor(blocks[1], right, out=blocks[3])
        prg.hash_into(blocks, out)
        s_left, s_right = hashed[0], hashed[2]
        t_left, t_right = s_left[:, :, 0] & _ONE, s_right[:, :, 0] & _ONE
        s_left &= clear
        s_right &= clear
        v_left, v_right = hashed[1][:, :, 0], hashed[3][:, :, 0]
        # Lose is the left branch where alpha's bit is 1, else the right one.
        s_diff = (s_left ^ s_right) & lose_left2
        s_lose, s_keep = s_right ^ s_diff, s_left ^ s_diff
        v_diff = (v_left ^ v_right) & lose_left
        v_lose, v_keep = v_right ^ v_diff, v_left ^ v_diff
        t_keep = t_left ^ ((t_left ^ t_right) & lose_left)
        s_cw = s_lose[0] ^ s_lose[1]
        sign = _ONE - (controls[1] << _ONE)  # (-1)^{t_1} as a ring element
        v_cw = sign * (v_lose[1] - v_lose[0] - v_alpha + (beta_part & lose_left))
        v_alpha = v_alpha - v_keep[1] + v_keep[0] + sign * v_cw
        t_cw_left = t_left[0] ^ t_left[1] ^ a ^ _ONE
        t_cw_right = t_right[0] ^ t_right[1] ^ a
        control_cw[0] |= t_cw_left << shift
        control_cw[1] |= t_cw_right << shift
        t_cw_keep = t_cw_left ^ ((t_cw_left ^ t_cw_right) & lose_left)
        key.seed_cw[level, start:stop] = s_cw
        key.value_cw[level, start:stop] = v_cw
        seeds = s_keep ^ (s_cw[None] & masks)
        controls = t_keep ^ (t_cw_keep[None] & controls)
        negated = _U64(0) - controls
        masks[:, :, 0] = negated
        masks[:, :, 1] = negated
    sign = _ONE - (controls[1] << _ONE)
    key.final_cw[start:stop] = sign * (seeds[1, :, 1] - seeds[0, :, 1] - v_alpha)


def dcf_eval(party: int, key: DcfKey, root: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
    """Party ``party``'s shares (N,) uint64 of ``beta * [y < alpha]`` for public ``y`` (N,), y < 2^bits.

    ``root`` is this party's (N, 2) root seed.  Follows only y's branch, in
    chunks of elements so that each level's buffers stay in cache.
    """
    if party not in (0, 1):
        raise MaterialError(f"a DCF has parties 0 and 1, not {party}", {"party": str(party)})
    n = key.size
    if root.shape != (n, 2) or y.shape != (n,):
        raise MaterialError("DCF root or input does not match the key's size", {"n": n})
    result = numpy.empty(n, dtype=_U64)
    chunks = _chunks(n, _CHUNK)
    if chunks:
        work = _EvalBuffers(max(stop - start for start, stop in chunks))
        for start, stop in chunks:
            _eval_chunk(party, key, root, y, start, stop, work, result[start:stop])
    return result


class _EvalBuffers:
    """The buffers of :func:`_eval_chunk`, allocated once per evaluation for its largest chunk.

    Fresh buffers of a chunk's size (128 KiB and more) come straight from
    the kernel, so allocating them per chunk pays page faults every time.
    """

    __slots__ = (
        "prg", "doubled", "seed", "mask", "blocks", "out", "tweak", "clear",
        "chosen", "control", "term", "child",
    )

    def __init__(self, most: int) -> None:
        self.prg = _Prg()
        self.doubled = numpy.empty((most, 2), dtype=_U64)
        self.seed = numpy.empty((most, 2), dtype=_U64)
        self.mask = numpy.empty((most, 2), dtype=_U64)
        self.blocks = numpy.empty(4 * most, dtype=_U64)
        self.out = numpy.empty(4 * most + 2, dtype=_U64)  # update_into's block of slack
        self.tweak = _tile(_VALUE_TWEAK, most)
        self.clear = _tile(_CLEAR, most)
        self.chosen = numpy.empty(most, dtype=_U64)
        self.control = numpy.empty(most, dtype=numpy.int64)
        self.term = numpy.empty(most, dtype=_U64)
        self.child = numpy.empty(most, dtype=_U64)


def _eval_chunk(
    party: int,
    key: DcfKey,
    root: numpy.ndarray,
    y: numpy.ndarray,
    start: int,
    stop: int,
    work: _EvalBuffers,
    result: numpy.ndarray,
) -> None:
    """One chunk of :func:`dcf_eval` into ``result``: 17 numpy calls and one AES call per level.

    Strided and broadcast numpy operations over a two-word inner dimension
    cost several times a contiguous one, so every per-element scalar that
    meets a seed (the input's bit) is held twice, in both words of a (m, 2)
    array, and the control bit is kept as a contiguous 0/1 column whose
    all-ones-or-zero (m, 2) mask is one ``take`` of a two-row table.  The
    MMO xor is applied only where it is read: to the seed block, and to the
    value's low word.
    """
    bits = key.bits
    m = stop - start
    ys = y[start:stop]
    # Bit p of `chosen` is the control CW of y's branch at level bits-1-p.
    left = key.control_cw[0, start:stop]
    chosen = work.chosen[:m]
    numpy.bitwise_xor(left, key.control_cw[1, start:stop], out=chosen)
    chosen &= ys
    chosen ^= left
    # The input in both words: ANDed with a level's bit, it is that level's right tweak.
    doubled = work.doubled[:m]
    doubled[:, 0] = ys
    doubled[:, 1] = ys
    seed = work.seed[:m]
    seed[...] = root[start:stop]
    control = work.control[:m]  # t, 0 or 1 (take's index)
    control.fill(party)
    t = control.view(_U64)
    mask = work.mask[:m]  # all ones where t = 1
    _MASKS.take(control, axis=0, out=mask, mode="wrap")
    value = result  # the sum of v + t * V_CW (the sign comes at the end)
    value.fill(0)
    blocks = work.blocks[: 4 * m].reshape(2, m, 2)
    out = work.out[: 4 * m + 2]
    hashed = out[: 4 * m].reshape(2, m, 2)
    block_seed, block_value, hashed_seed, hashed_value = blocks[0], blocks[1], hashed[0], hashed[1]
    tweak, clear, term, child = work.tweak[:m], work.clear[:m], work.term[:m], work.child[:m]
    for level in range(bits):
        shift = _U64(bits - 1 - level)
        # The right branch's tweak is y's bit of the level, in both words.
        numpy.bitwise_and(doubled, _ONE << shift, out=block_value)
        numpy.bitwise_xor(seed, block_value, out=block_seed)
        numpy.bitwise_xor(block_seed, tweak, out=block_value)
        work.prg.encrypt_into(blocks, out)
        # value += v + t * V_CW, v the low word of the value block's MMO output
        numpy.bitwise_xor(hashed_value[:, 0], block_value[:, 0], out=term)
        value += term
        numpy.multiply(key.value_cw[level, start:stop], t, out=term)
        value += term
        # seed' = child seed xor t * s_CW (s_CW's low bit is 0: seed' keeps the child's t)
        numpy.bitwise_and(key.seed_cw[level, start:stop], mask, out=seed)
        seed ^= hashed_seed
        seed ^= block_seed
        numpy.bitwise_and(seed[:, 0], _ONE, out=child)
        seed &= clear
        # t' = child t xor t * t_CW of y's branch
        numpy.right_shift(chosen, shift, out=term)
        term &= t
        numpy.bitwise_xor(term, child, out=t)
        _MASKS.take(control, axis=0, out=mask, mode="wrap")
    numpy.multiply(key.final_cw[start:stop], t, out=term)
    value += term
    value += seed[:, 1]
    if party == 1:
        numpy.negative(value, out=value)


def _tile(pair: numpy.ndarray, m: int) -> numpy.ndarray:
    """A (m, 2) contiguous array of the two words ``pair``."""
    return numpy.tile(pair, (m, 1))
