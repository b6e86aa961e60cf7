"""How a job's progress is shown: an observer the client supplies, and what each round says.

Owns :class:`RoundObserver` (told of every good round, closed when the job
ends: ``node.client.fl`` implements it as a progress bar) and
:func:`round_summary`, the few words a round is shown with.  The core only
calls the observer; how (and whether) it draws is the client's business, so
no display library is imported here.

Must not import asyncio, websockets, tqdm, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Protocol

from protocol.federated import RoundRecord

__all__ = ["RoundObserver", "round_summary"]


class RoundObserver(Protocol):
    """Watches a job run from this process, round by round."""

    def round_done(self, record: RoundRecord, summary: Mapping[str, str]) -> None:
        """A round ended well: its record and :func:`round_summary`'s words for it."""
        ...

    def close(self) -> None:
        """The job ended (done, failed or interrupted)."""
        ...


def round_summary(record: RoundRecord, epsilon_spent: Optional[float]) -> Dict[str, str]:
    """The round's loss (or, under DP-SGD, the budget spent so far), accuracy and dropouts, formatted."""
    summary = {"loss": f"{record.train_loss:.4f}"}
    if epsilon_spent is not None:  # DP-SGD owners withhold their loss: show the budget spent instead
        summary = {"epsilon": f"{epsilon_spent:.2f}"}
    if record.heldout is not None and record.heldout.accuracy is not None:
        summary["acc"] = f"{record.heldout.accuracy:.3f}"
    if record.dropped:
        summary["dropped"] = str(len(record.dropped))
    return summary
