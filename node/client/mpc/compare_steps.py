"""The client's comparison steps: ``x.drelu()`` and ``x.relu()`` as ``drelu``/``relu`` steps, in chunks.

Runs in the user's process.  A comparison is one ``mpc_deal`` (a
``compare`` spec of the group's width and route) and one ``mpc_step`` per
party (:meth:`~node.client.mpc.group.PartyGroup.post_compare`).  Material
grows with the elements compared (an FSS key is about 1 KiB per element at
width 64), so a tensor of more than :data:`CHUNK_ELEMENTS` elements is
flattened and compared in slices of that many, one deal and one step each,
posted in turn without waiting: the crypto provider deals slice k + 1 while
the parties compute slice k, and no letter approaches the message limit.
Each party then concatenates its result slices and reshapes (ordinary
commands).  Everything is posted; errors surface at the next ``get``/``sync``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from protocol.mpc import StepOp, WireCompare

from ..pointer import Pointer

if TYPE_CHECKING:
    from .shared import SharedTensor

__all__ = ["CHUNK_ELEMENTS", "compare"]

CHUNK_ELEMENTS = 1 << 16
"""Most elements one comparison step handles; larger tensors go in slices of this many."""


def compare(x: SharedTensor, op: StepOp) -> SharedTensor:
    """``drelu`` (bits [x >= 0], precision 0, bool) or ``relu`` (x's precision and dtype) of ``x``."""
    from .shared import SharedTensor

    relu = op is StepOp.RELU
    precision, dtype = (x.precision, x.dtype) if relu else (0, torch.bool)
    group = x.group
    total = x.numel()
    if total <= CHUNK_ELEMENTS:
        spec = WireCompare(tuple(x.shape), group.compare_width, relu, group.compare_route)
        shares = group.post_compare(op, x._shares, spec)
        return SharedTensor(group, shares, x.shape, precision, dtype)
    flat = x.reshape(total)
    pieces: list[tuple[Pointer, ...]] = []
    for start in range(0, total, CHUNK_ELEMENTS):
        part = flat[start : start + CHUNK_ELEMENTS]
        spec = WireCompare((part.numel(),), group.compare_width, relu, group.compare_route)
        pieces.append(group.post_compare(op, part._shares, spec))
    joined = []
    for index in range(len(group.parties)):
        party_pieces = [piece[index] for piece in pieces]
        node = party_pieces[0].node
        whole = node.command_one("cat", None, (party_pieces, 0), {})
        joined.append(node.command_one("reshape", whole, (list(x.shape),), {}))
    return SharedTensor(group, joined, x.shape, precision, dtype)
