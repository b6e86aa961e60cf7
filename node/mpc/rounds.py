"""Multi-round share protocols as sans-I/O generators, and their in-process driver.

Owns the interface between a protocol of several openings (a comparison,
a ReLU, an arithmetic-to-binary conversion) and whoever moves its bytes.  A
party's side of such a protocol is a generator:

- it yields an :class:`Opening`: the tensors this party sends to every
  other party in this round (masked values: they reveal nothing alone);
- it is sent back every party's tensors of that round, in party order, its
  own included (:data:`Opened`);
- it returns this party's share of the result.

So the pure core (:mod:`node.mpc`) computes every step, and the networked
party (:mod:`node.server.mpc.party`) only sends, waits and resumes the
generator, exactly as it does for Beaver's steps; :func:`run_local` drives
one generator per party in one process, for tests and simulations.  A
protocol's round count is fixed by its public parameters (shape, width,
number of parties), never by a secret.  Must not import asyncio,
websockets, or anything of ``node.server`` / ``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, Sequence

import torch

from .errors import PartyError

__all__ = ["Opening", "Opened", "RoundProtocol", "run_local"]


@dataclass(frozen=True, slots=True)
class Opening:
    """One round: the tensors this party sends to every other party."""

    values: tuple[torch.Tensor, ...]


Opened = list[tuple[torch.Tensor, ...]]
"""Every party's values of one round, in party order (the receiver's own included)."""

RoundProtocol = Generator[Opening, Opened, torch.Tensor]
"""A party's side of a multi-round protocol: yields openings, returns its result share."""


def run_local(protocols: Sequence[RoundProtocol]) -> tuple[list[torch.Tensor], int]:
    """Drive one generator per party (index i is party i); their result shares and the round count.

    Every round, each party's opening is handed to every party, as the
    networked layer does over TLS.  The parties must agree on the number
    of rounds and on the number of tensors each round carries.
    """
    n = len(protocols)
    results: list[torch.Tensor | None] = [None] * n
    openings: list[Opening | None] = [None] * n
    for index, protocol in enumerate(protocols):
        openings[index] = _advance(protocol, None, results, index)
    rounds = 0
    while any(o is not None for o in openings):
        if not all(o is not None for o in openings):
            raise PartyError("the parties disagree on the number of rounds", {"round": rounds})
        opened: Opened = [o.values for o in openings if o is not None]
        if len({len(values) for values in opened}) != 1:
            raise PartyError("the parties opened different numbers of tensors", {"round": rounds})
        rounds += 1
        for index, protocol in enumerate(protocols):
            openings[index] = _advance(protocol, opened, results, index)
    return [r for r in results if r is not None], rounds


def _advance(
    protocol: RoundProtocol, opened: Opened | None, results: list[torch.Tensor | None], index: int
) -> Opening | None:
    """The protocol's next opening, or None once it returned (its result kept in ``results``)."""
    try:
        return next(protocol) if opened is None else protocol.send(opened)
    except StopIteration as stop:
        results[index] = stop.value
        return None
