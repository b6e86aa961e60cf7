"""Typed errors of a federated job as a whole (the trainer's side).

- :class:`JobError`: the job cannot start (a search that matched nothing,
  datasets with different feature shapes, a model that cannot take the
  data, more required participants than owners...).  Raised before any
  round; a ``BAD_REQUEST`` on the wire (a trainer node refusing a job).
- :class:`RoundFailed`: fewer owners than the minimum answered a round in
  time; the global model stays at the last good round.  A
  ``PEER_UNAVAILABLE`` on the wire.
- :class:`SecureAggregationUnavailable`: ``secure_aggregation=True`` was
  asked for; networked secret sharing of updates is not built yet.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from protocol.errors import BadRequest, PeerUnavailable, TesseraError

__all__ = ["JobError", "RoundFailed", "SecureAggregationUnavailable"]


class JobError(BadRequest, ValueError):
    """A federated job is invalid and no round was started."""

    @classmethod
    def for_reason(cls, reason: str) -> JobError:
        return cls(f"federated job: {reason}", {"reason": reason})


class RoundFailed(PeerUnavailable):
    """Too few owners answered a round; the global model is left at the last good round."""

    @classmethod
    def for_round(cls, round_index: int, answered: int, required: int,
                  dropped: Sequence[Tuple[str, str]]) -> RoundFailed:
        shown = "; ".join(f"{who}: {why}" for who, why in dropped[:4])
        more = f" (+{len(dropped) - 4} more)" if len(dropped) > 4 else ""
        return cls(
            f"round {round_index} failed: {answered} of the required {required} owners answered"
            + (f" ({shown}{more})" if shown else "")
            + "; the global model stays at the last good round",
            {"round": round_index, "answered": answered, "required": required},
        )


class SecureAggregationUnavailable(TesseraError, NotImplementedError):
    """``secure_aggregation=True``: not available yet in this version."""

    @classmethod
    def create(cls) -> SecureAggregationUnavailable:
        return cls(
            "secure_aggregation=True is not available yet: networked secret sharing of "
            "updates (node.mpc) is still being built; run with secure_aggregation=False, "
            "where the trainer sees each owner's update",
            {"feature": "secure_aggregation"},
        )
