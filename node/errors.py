"""Errors raised in the user's process that never travel on the wire.

Wire errors (``NotFound``, ``OpFailed``...) come from :mod:`protocol.errors`
and connection errors from :mod:`peer.errors`; both are re-exported by
``node``.
"""

from __future__ import annotations

from peer.errors import ClientClosed, InsecureConnectionWarning, NodeUnavailable
from protocol.errors import TesseraError

__all__ = ["NodeUnavailable", "MixedNodesError", "ClientClosed", "InsecureConnectionWarning"]


class MixedNodesError(TesseraError, ValueError):
    """An op mixes pointers to objects on different nodes.

    Computation happens where the data is; move or copy one operand first.
    """

    @classmethod
    def for_nodes(cls, op: str, first: str, second: str) -> MixedNodesError:
        return cls(
            f"{op} mixes pointers on {first!r} and {second!r}; "
            "operands of one op must live on the same node",
            {"op": op, "first": first, "second": second},
        )
