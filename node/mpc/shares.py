"""Additive secret shares over Z/2^64 and the arithmetic parties do alone.

Owns :func:`split` (a ring tensor into ``n`` shares: ``n - 1`` uniform from
:mod:`node.mpc.prg`, the last one the value minus their sum, so any
``n - 1`` of them are uniform and independent of the value),
:func:`reconstruct`, and the local share arithmetic a party applies to its
own share: linear operations on shared operands, public constants (added by
party 0 only), multiplication by public integers, and the view operations
(reshape, transpose, indexing) that commute with addition.  Must not import
asyncio, websockets, or anything of ``node.server`` / ``node.client``.

Everything here is local: no value crosses between parties.  Products of
two shared values need Beaver triples (:mod:`node.mpc.beaver`), products of
fixed-point values need truncation (:mod:`node.mpc.truncation`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import PartyError, RingError
from .prg import random_ring
from .ring import RING_DTYPE, check_ring, mul_int, ring_tensor

__all__ = [
    "MAX_PARTIES",
    "check_party",
    "check_party_count",
    "split",
    "reconstruct",
    "add",
    "sub",
    "neg",
    "add_public",
    "sub_public",
    "public_sub",
    "mul_public",
    "sum_share",
    "reshape",
    "transpose",
    "index",
]

MAX_PARTIES = 64
"""Computing parties per sharing; the dealer's work and the openings grow with it."""


def check_party_count(n_parties: int, scheme: str = "additive sharing") -> int:
    """Return ``n_parties`` if it is in [2, MAX_PARTIES], else raise :class:`PartyError`."""
    if not isinstance(n_parties, int) or not 2 <= n_parties <= MAX_PARTIES:
        raise PartyError.for_count(int(n_parties), scheme, 2, MAX_PARTIES)
    return n_parties


def check_party(party: int, n_parties: int) -> int:
    """Return ``party`` if it is in [0, n_parties), else raise :class:`PartyError`."""
    if not isinstance(party, int) or not 0 <= party < n_parties:
        raise PartyError.for_index(int(party), n_parties)
    return party


def split(value: torch.Tensor, n_parties: int) -> list[torch.Tensor]:
    """``n_parties`` additive shares of the ring tensor ``value``; share i goes to party i."""
    check_ring(value, "secret")
    check_party_count(n_parties)
    shares = [random_ring(value.shape) for _ in range(n_parties - 1)]
    last = value.clone()
    for share in shares:
        last -= share
    shares.append(last)
    return shares


def reconstruct(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ring tensor the shares add up to (mod 2^64)."""
    check_party_count(len(shares), "reconstruction")
    total = check_ring(shares[0], "share 0").clone()
    for number, share in enumerate(shares[1:], start=1):
        check_ring(share, f"share {number}")
        if share.shape != total.shape:
            raise RingError.shape_mismatch(
                f"share {number}", tuple(total.shape), tuple(share.shape)
            )
        total += share
    return total


def add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """This party's share of x + y, from its shares of x and y."""
    return check_ring(x, "left share") + check_ring(y, "right share")


def sub(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """This party's share of x - y, from its shares of x and y."""
    return check_ring(x, "left share") - check_ring(y, "right share")


def neg(x: torch.Tensor) -> torch.Tensor:
    """This party's share of -x."""
    return -check_ring(x, "share")


def add_public(share: torch.Tensor, public: torch.Tensor | int, party: int) -> torch.Tensor:
    """This party's share of x + c for a public ring value c: only party 0 adds it."""
    check_ring(share, "share")
    constant = ring_tensor(public)
    if party == 0:
        return share + constant
    return share + torch.zeros_like(constant)


def sub_public(share: torch.Tensor, public: torch.Tensor | int, party: int) -> torch.Tensor:
    """This party's share of x - c for a public ring value c: only party 0 subtracts it."""
    check_ring(share, "share")
    constant = ring_tensor(public)
    if party == 0:
        return share - constant
    return share - torch.zeros_like(constant)


def public_sub(public: torch.Tensor | int, share: torch.Tensor, party: int) -> torch.Tensor:
    """This party's share of c - x for a public ring value c."""
    return add_public(neg(share), public, party)


def mul_public(share: torch.Tensor, public: torch.Tensor | int) -> torch.Tensor:
    """This party's share of x * k for a public integer (or int64 tensor) k.

    Exact in the ring.  For a fixed-point constant, encode it first and
    truncate the product (:mod:`node.mpc.truncation`).
    """
    check_ring(share, "share")
    if isinstance(public, torch.Tensor):
        return share * check_ring(public, "public factor")
    return mul_int(share, public)


def sum_share(
    share: torch.Tensor, dim: int | tuple[int, ...] | None = None, keepdim: bool = False
) -> torch.Tensor:
    """This party's share of x.sum(dim) (wraps mod 2^64 like every ring sum)."""
    check_ring(share, "share")
    if dim is None:
        return share.sum(dtype=RING_DTYPE)
    return share.sum(dim=dim, keepdim=keepdim, dtype=RING_DTYPE)


def reshape(share: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """This party's share of x.reshape(shape)."""
    return check_ring(share, "share").reshape(tuple(shape))


def transpose(share: torch.Tensor, dim0: int, dim1: int) -> torch.Tensor:
    """This party's share of x.transpose(dim0, dim1)."""
    return check_ring(share, "share").transpose(dim0, dim1)


def index(
    share: torch.Tensor, key: int | slice | torch.Tensor | tuple[int | slice | torch.Tensor, ...]
) -> torch.Tensor:
    """This party's share of x[key] (the same public key on every party)."""
    return check_ring(share, "share")[key]
