"""Typed identifiers shared by every room.

Ids are ``NewType``s so that a node id can never be passed where an object id
is expected without the type checker noticing.  This module imports nothing.
"""

from __future__ import annotations

from typing import NewType, TypeGuard

__all__ = ["NodeId", "ObjectId", "RequestId", "MAX_OBJECT_ID", "MAX_REQUEST_ID", "is_request_id"]

NodeId = NewType("NodeId", str)
"""Name of a node on the network (``alice``); chosen by its operator."""

ObjectId = NewType("ObjectId", int)
"""Identifier of a stored object, unsigned 64-bit, chosen by the client.

Clients pick them at random (see ``PROTOCOL.md``) so that results of
pipelined commands can be referenced before the node has replied.
"""

RequestId = NewType("RequestId", int)
"""Correlates a reply with its request; unsigned 64-bit, chosen by the sender."""

MAX_OBJECT_ID = 2**64 - 1
MAX_REQUEST_ID = 2**64 - 1


def is_request_id(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a valid request id: an int (not a bool) in ``0 .. 2^64-1``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REQUEST_ID
