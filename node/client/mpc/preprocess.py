"""Dealing comparison material ahead of use: ``node.preprocess`` (PySyft's ``provide_primitives``).

Runs in the user's process.  An FSS comparison's keys are large (about
0.8 KB per element and party at width 32) and the crypto provider takes
hundreds of milliseconds to generate them for 10^5 elements; dealt when the
op is posted, that is most of a ``relu``'s time.  Dealt ahead, the online op
is the parties' rounds alone:

    node.preprocess("relu", (1000, 100), alice, bob, crypto_provider=charlie, count=10, wait=True)
    x = node.share(batch, alice, bob, crypto_provider=charlie)
    x.relu()  # spends one of the ten pre-dealt sessions; the provider is not contacted

:func:`deal_ahead` posts the ``mpc_deal`` of every step that ``relu`` (or
``drelu``) on a tensor of that shape posts (one per chunk,
:func:`~.compare_steps.chunk_specs`), ``count`` times, with fresh session
ids kept in :mod:`.predealt`; nothing changes on the wire (the parties keep
early material letters for :data:`protocol.mpc.MATERIAL_TTL` seconds).
Each session is spent once, by a step of exactly that op, shape, width and
route; a session unused after :data:`~.predealt.USE_WITHIN` seconds is
dropped.  Mind the parties' bounds: they buffer at most 2 GiB of letters
from one provider (``QUOTA_EXCEEDED`` beyond), about 2.7 million elements
of relu at width 32.
"""

from __future__ import annotations

import secrets
from typing import Sequence

from protocol.errors import TesseraError
from protocol.mpc import COMPARE_OPS, DEFAULT_STEP_TIMEOUT, SESSION_BYTES, StepOp

from ..host import Handle
from .compare_steps import chunk_specs
from .group import DEFAULT_COMPARE_WIDTH, PartyGroup, SharingError, group_of

__all__ = ["deal_ahead", "preprocess", "MAX_COUNT"]

MAX_COUNT = 10_000
"""Most repetitions one call deals (a typo guard: material is bounded by the parties anyway)."""


def deal_ahead(group: PartyGroup, op: str | StepOp, shape: Sequence[int], count: int = 1, wait: bool = False) -> int:
    """Deal ``count`` times the material of ``op`` (``"relu"`` or ``"drelu"``) on a tensor of ``shape``.

    For ``group``'s parties, provider, width and route.  Posts without
    waiting unless ``wait``: then it returns once the provider answered
    every deal, that is once every party acknowledged its letters, so the
    next comparison of that shape is online work only; a deal that failed
    is raised then, and none of this call's sessions is spent.  Returns the
    number of sessions dealt (``count`` times the chunks of ``shape``).
    """
    step = _op(op)
    dims = tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in dims):
        raise SharingError(f"shape must be non-negative integers, not {list(shape)!r}", {})
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise SharingError(f"count must be an integer in [1, {MAX_COUNT}], not {count!r}", {})
    specs = chunk_specs(group, dims, step)
    pool = group.predealt
    dealt: set[bytes] = set()
    for _ in range(count):
        for spec in specs:
            session = secrets.token_bytes(SESSION_BYTES)
            group.deal(session, (spec,))  # CryptoProviderUnavailable: nothing pooled for it
            pool.put(step, spec, session)
            dealt.add(session)
    provider = group.crypto_provider
    if wait and provider is not None:  # without one, group.deal raised CryptoProviderRequired above
        try:
            provider.sync()
        except TesseraError:
            pool.discard(dealt)
            raise
    return len(dealt)


def preprocess(
    op: str,
    shape: Sequence[int],
    *parties: Handle,
    crypto_provider: Handle | None = None,
    count: int = 1,
    wait: bool = False,
    compare_width: int = DEFAULT_COMPARE_WIDTH,
    comparison: str | None = None,
) -> int:
    """Deal comparison material ahead for values to be shared between ``parties``.

    ``op`` (``"relu"`` or ``"drelu"``), the tensor's ``shape``, and the same
    parties, ``crypto_provider``, ``compare_width`` and ``comparison`` as the
    ``node.share`` whose comparisons will spend it (see :func:`deal_ahead`
    for ``count`` and ``wait``).
    Returns the number of sessions dealt.
    """
    group = group_of(parties, crypto_provider, None, DEFAULT_STEP_TIMEOUT, compare_width, comparison)
    return deal_ahead(group, op, shape, count, wait)


def _op(op: str | StepOp) -> StepOp:
    try:
        step = StepOp(op)
    except ValueError:
        step = None
    if step is None or step not in COMPARE_OPS:
        raise SharingError(f"only comparisons are dealt ahead: op must be 'relu' or 'drelu', not {op!r}", {})
    return step
