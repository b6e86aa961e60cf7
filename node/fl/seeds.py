"""How a federated job's seed becomes each owner's seed in each round.

Owns :func:`owner_seed`.  The networked FedAvg and the in-process
reference (:func:`node.fl.reference.plain_fedavg`) must derive the same
seeds to give bit-for-bit identical models:

    seed(job, round r, owner i) = first 8 bytes (big-endian) of
        SHA-256("tessera-fl-owner-seed/v1:{job}:{r}:{i}"), top bit cleared

``r`` counts rounds from 0; ``i`` is the owner's position in the job's owner
list as fixed when the job starts (an owner keeps its index when others
drop out).  Each owner seeds a private ``torch.Generator`` with it for
shuffling and dropout masks; torch's global generator is never touched.
A hash (rather than ``job + r * k + i``) keeps the streams of neighbouring
rounds and owners unrelated and is identical on every platform.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import hashlib

__all__ = ["owner_seed"]


def owner_seed(job_seed: int, round_index: int, owner_index: int) -> int:
    """The local training seed of owner ``owner_index`` in round ``round_index``."""
    if min(job_seed, round_index, owner_index) < 0:
        raise ValueError("job seed, round and owner index must be non-negative")
    text = f"tessera-fl-owner-seed/v1:{job_seed}:{round_index}:{owner_index}"
    digest = hashlib.sha256(text.encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)
