"""Object ids the client picks, so results can be named before the node answers.

Pipelining rests on this: ``c = a + b`` names ``c`` itself and sends the
command without waiting.  Imports :mod:`protocol` only.
"""

from __future__ import annotations

import random
import secrets

from protocol.ids import ObjectId

__all__ = ["new_object_id"]

_ids = random.Random(secrets.randbits(128))
"""Object ids need to be unique, not secret (the store checks who may see what):
a PRNG seeded from the OS avoids a system call per command."""


def new_object_id() -> ObjectId:
    """A random non-zero 64-bit id; collisions are negligible (birthday bound 2^32)."""
    return ObjectId(_ids.getrandbits(64) or 1)
