"""Making shared tensors: ``node.share(tensor, ...)`` and ``ptr.share(...)``.

Runs in the user's process.

- :func:`share`: the client holds the data, so it is the data owner: it
  encodes the tensor (fixed point with ``precision`` fractional bits, or
  exactly for integer tensors), splits it into uniform additive shares
  (:func:`node.mpc.split`, AES-CTR randomness) and sends share i to party i.
  Posted, no round trip.
- :func:`share_pointer`: the data stays on its node.  The client reserves an
  id on every party (``expect``, all in parallel), then asks the owner
  (``mpc_split``) to split the object and deliver each share straight to its
  party over pinned node-to-node links; the owner answers once every share
  is in place, with the value's dtype, shape and precision.  The client only
  ever holds pointers, and each share keeps its source's read policy.

Uses handles through the :class:`~node.client.host.Handle` protocol only
(``ptr.share`` reaches :func:`share_pointer` through its handle).
"""

from __future__ import annotations

import concurrent.futures
import secrets

import torch

from protocol.messages import AckReply, ExpectRequest, Reply
from protocol.mpc import DEFAULT_STEP_TIMEOUT, MpcSplitReply, MpcSplitRequest, SplitTarget
from protocol.tensors import DTYPES
from protocol.transfers import TICKET_BYTES

from node.mpc import DEFAULT_PRECISION_BITS, encoder_for, split
from node.mpc.encoding import FLOAT_DTYPES, FixedPointEncoder
from node.mpc.ring import RING_DTYPE

from ..host import Handle
from ..ids import new_object_id
from ..pointer import BasePointer, Pointer
from .group import DEFAULT_COMPARE_WIDTH, SharingError, group_of
from .shared import SharedTensor

__all__ = ["share", "share_pointer"]


def _decoded_dtype(dtype: torch.dtype) -> torch.dtype:
    """What ``get`` returns: the float dtype itself, int64 for every integer dtype."""
    return dtype if dtype in FLOAT_DTYPES else RING_DTYPE


def share(
    value: torch.Tensor,
    *parties: Handle,
    crypto_provider: Handle | None = None,
    precision: int = DEFAULT_PRECISION_BITS,
    truncation: str | None = None,
    timeout: float = DEFAULT_STEP_TIMEOUT,
    compare_width: int = DEFAULT_COMPARE_WIDTH,
    comparison: str | None = None,
) -> SharedTensor:
    """Secret-share ``value`` between ``parties``, with ``crypto_provider`` dealing for products.

    Floats are fixed point with ``precision`` fractional bits (16 by
    default); integer tensors are shared exactly.  Without a
    ``crypto_provider`` the value can be added, subtracted, scaled by public
    integers and reconstructed; its first product raises
    :class:`~node.client.mpc.group.CryptoProviderRequired`.  The parties
    (and provider) are all :class:`~node.VirtualNode` s of this process or
    all networked nodes (:class:`~node.client.mpc.group.MixedNetworks`).  ``truncation``:
    ``"local"`` (2 parties only, the default for 2) or ``"dealer"`` (any
    number, the default for 3 or more); see PROTOCOL.md section 19.
    ``timeout`` bounds each party's waits for material and openings.
    ``compare_width`` (2 to 64, default 32) and ``comparison`` (``"fss"``, 2
    parties only, their default; ``"a2b"``, any number) set how
    ``relu``/``drelu`` run (PROTOCOL.md section 20.8).
    """
    if isinstance(value, BasePointer):
        if not isinstance(value, Pointer):
            raise SharingError("secret sharing needs a pointer on a synchronous node (node.connect)", {})
        return share_pointer(value, *parties, crypto_provider=crypto_provider, precision=precision,
                             truncation=truncation, timeout=timeout, compare_width=compare_width,
                             comparison=comparison)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"share() takes a torch.Tensor or a Pointer, not {type(value).__name__}")
    group = group_of(parties, crypto_provider, truncation, timeout, compare_width, comparison)
    encoder = encoder_for(value, precision)  # UnsupportedDtype / InvalidPrecision first
    shares = split(encoder.encode(value.detach()), len(parties))
    pointers = [party.send(s) for party, s in zip(group.parties, shares)]
    return SharedTensor(group, pointers, value.shape, encoder.precision_bits, _decoded_dtype(value.dtype))


def share_pointer(
    pointer: Pointer,
    *parties: Handle,
    crypto_provider: Handle | None = None,
    precision: int = DEFAULT_PRECISION_BITS,
    truncation: str | None = None,
    timeout: float = DEFAULT_STEP_TIMEOUT,
    compare_width: int = DEFAULT_COMPARE_WIDTH,
    comparison: str | None = None,
) -> SharedTensor:
    """Have the pointer's node split its object and deliver the shares to ``parties``."""
    owner = pointer.node
    group = group_of(parties, crypto_provider, truncation, timeout, compare_width, comparison, also=(owner,))
    owner_fp = owner.fingerprint
    if owner_fp is None:
        raise SharingError(f"{owner.id}: the data owner must be reached over TLS", {})
    FixedPointEncoder(precision)  # InvalidPrecision before anything is sent
    targets = []
    pending: list[tuple[Handle, concurrent.futures.Future[Reply]]] = []
    for party, address in zip(group.parties, group.addresses):
        object_id, ticket = new_object_id(), secrets.token_bytes(TICKET_BYTES)
        party.flush_drops()
        expect = party.call_async(lambda rid: ExpectRequest(rid, object_id, owner.id, owner_fp, ticket))
        pending.append((party, expect))
        targets.append(SplitTarget(address.node, address.url, address.fingerprint, object_id, ticket))
    for party, future in pending:
        party.settle(future.result(timeout=timeout + 30), AckReply, f"expect (share of {pointer!r})")
    split_targets = tuple(targets)
    reply = owner.call(
        lambda rid: MpcSplitRequest(rid, pointer.object_id, precision, split_targets),
        MpcSplitReply,
        f"share({pointer!r})",
    )
    dtype = DTYPES[reply.dtype]
    shares = [Pointer(party, t.object_id) for party, t in zip(group.parties, targets)]
    return SharedTensor(group, shares, reply.shape, reply.precision, _decoded_dtype(dtype))
