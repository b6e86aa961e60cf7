"""The dropout policy of a round, as pure functions: who is left out, and when a round fails.

Owns :func:`is_dropout`, :func:`describe_failure`, :func:`dropouts` and
:func:`require`.  The round loop (:mod:`node.fl.rounds`) and the
aggregation protocols (:mod:`node.fl.secure_rounds`) hand their failures
over here and act on the answer; nothing here waits or sends.

An owner that fails to answer in time, loses its connection or reports an
internal problem or a full quota is *dropped* from the round (recorded with
its reason) and asked again next round.  An owner that refuses the task
itself (``BAD_REQUEST``, ``NOT_FOUND``, ``PERMISSION_DENIED``...: the job
is wrong, not the owner unlucky) fails the job with that error.  Fewer
answers than a round needs raise :class:`~node.fl.job_errors.RoundFailed`.

Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple, TypeVar

from protocol.errors import InternalError, PeerUnavailable, QuotaExceeded, TesseraError

from .job_errors import RoundFailed

__all__ = ["is_dropout", "describe_failure", "dropouts", "require"]

K = TypeVar("K")

_DROPOUT_ERRORS: Tuple[type, ...] = (PeerUnavailable, InternalError, QuotaExceeded, TimeoutError, OSError)


def is_dropout(exc: BaseException) -> bool:
    """Whether a failed answer leaves the owner out of the round (else the job fails).

    Unreachable or vanished owners, timeouts, an owner's internal error or
    full quota are dropouts; a refusal of the task itself is not.
    """
    if isinstance(exc, TesseraError) and exc.code is None:
        return True  # local failures: connection lost, client closed
    return isinstance(exc, _DROPOUT_ERRORS)


def describe_failure(exc: BaseException) -> str:
    """A failure in one line of at most 500 characters, for the round's record."""
    text = exc.message if isinstance(exc, TesseraError) else (str(exc) or type(exc).__name__)
    return " ".join(text.split())[:500]


def dropouts(failures: Mapping[K, BaseException]) -> Dict[K, str]:
    """Each failure's reason, when every one is a dropout.

    Raises the first failure (in the mapping's order, owner-index order as
    the loop builds it) that is a refusal: the job fails with it.
    """
    for failure in failures.values():
        if not is_dropout(failure):
            raise failure
    return {key: describe_failure(failure) for key, failure in failures.items()}


def require(round_index: int, answered: int, need: int, dropped: Mapping[int, str], labels: Sequence[str]) -> None:
    """Raise :class:`RoundFailed` when fewer than ``need`` owners are still in the round.

    ``labels`` names every owner index (its dataset) for the message.
    """
    if answered < need:
        named = [(labels[index], why) for index, why in sorted(dropped.items())]
        raise RoundFailed.for_round(round_index, answered, need, named)
