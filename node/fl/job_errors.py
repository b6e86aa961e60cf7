"""Typed errors of a federated job as a whole (the trainer's side).

- :class:`JobError`: the job cannot start (a search that matched nothing,
  datasets with different feature shapes, a model that cannot take the
  data, more required participants than owners...).  Raised before any
  round; a ``BAD_REQUEST`` on the wire (a trainer node refusing a job).
- :class:`RoundFailed`: fewer owners than the minimum answered a round in
  time; the global model stays at the last good round.  A
  ``PEER_UNAVAILABLE`` on the wire.
- :class:`AggregationFailed`: a secure round's aggregation party did not
  answer (or answered wrongly) while the shares were summed; a
  :class:`RoundFailed`, so the global model stays at the last good round.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from protocol.errors import BadRequest, PeerUnavailable

__all__ = ["JobError", "RoundFailed", "AggregationFailed"]


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


class AggregationFailed(RoundFailed):
    """A secure round's aggregation party failed; the global model stays at the last good round."""

    @classmethod
    def for_party(cls, round_index: int, party: str, reason: str) -> AggregationFailed:
        return cls(
            f"round {round_index} failed: aggregation party {party} {reason}; "
            "the global model stays at the last good round",
            {"round": round_index, "party": party},
        )
