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

from typing import Sequence

from protocol.mpc import StepOp, WireCompare

from ..pointer import Pointer
from ..torch_functions import wire_index
from .group import PartyGroup

__all__ = ["CHUNK_ELEMENTS", "compare", "chunk_specs"]

CHUNK_ELEMENTS = 1 << 16
"""Most elements one comparison step handles; larger tensors go in slices of this many."""


def compare(group: PartyGroup, shares: Sequence[Pointer], shape: Sequence[int], op: StepOp) -> tuple[Pointer, ...]:
    """Every party's result share of ``op`` (``drelu`` or ``relu``) on the shares of a tensor of ``shape``."""
    specs = chunk_specs(group, shape, op)
    if len(specs) == 1 and specs[0].shape == tuple(shape):
        return group.post_compare(op, shares, specs[0])
    total = sum(spec.shape[0] for spec in specs)
    flat = [_command("reshape", share, [total]) for share in shares]
    pieces: list[tuple[Pointer, ...]] = []
    start = 0
    for spec in specs:
        index = wire_index(slice(start, start + spec.shape[0]))
        start += spec.shape[0]
        part = [_command("getitem", share, index) for share in flat]
        pieces.append(group.post_compare(op, part, spec))
    joined = []
    for index_of_party, share in enumerate(shares):
        party_pieces = [piece[index_of_party] for piece in pieces]
        whole = share.node.command_one("cat", None, (party_pieces, 0), {})
        joined.append(_command("reshape", whole, list(shape)))
    return tuple(joined)


def chunk_specs(group: PartyGroup, shape: Sequence[int], op: StepOp) -> list[WireCompare]:
    """The ``compare`` spec of every step :func:`compare` posts for ``op`` on a tensor of ``shape``.

    The tensor's own shape up to :data:`CHUNK_ELEMENTS` elements; beyond,
    flat slices of that many and a last one of the rest.  Dealing ahead
    (:mod:`.preprocess`) deals exactly these, so the steps find them.
    """
    relu = op is StepOp.RELU
    total = 1
    for size in shape:
        total *= size
    if total <= CHUNK_ELEMENTS:
        return [WireCompare(tuple(shape), group.compare_width, relu, group.compare_route)]
    return [
        WireCompare((min(CHUNK_ELEMENTS, total - start),), group.compare_width, relu, group.compare_route)
        for start in range(0, total, CHUNK_ELEMENTS)
    ]


def _command(op: str, target: Pointer, *args: object) -> Pointer:
    """Method-form command ``target.op(*args)`` on the share's node."""
    return target.node.command_one(op, target, args, {})
