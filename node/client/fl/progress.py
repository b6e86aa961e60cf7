"""A federated job's progress as a terminal progress bar, in the user's process.

Owns :class:`ProgressBar`, the :class:`~node.fl.progress.RoundObserver`
a dataset pointer gives ``node.fl.FedAvg(..., progress=True)``, also drawn
by ``RemoteJob.wait`` for a job on a trainer node: one tqdm bar per job,
advanced by each good round and captioned with its summary (loss or epsilon
spent, accuracy, dropouts).  The federated core never imports tqdm; this is
the only place a job run or awaited from this process draws.
"""

from __future__ import annotations

from typing import Mapping

from tqdm.auto import tqdm

from protocol.federated import RoundRecord

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar of ``rounds`` rounds named ``title``."""

    def __init__(self, rounds: int, title: str) -> None:
        self._bar = tqdm(total=rounds, desc=title, unit="round")

    def round_done(self, record: RoundRecord, summary: Mapping[str, str]) -> None:
        self._bar.set_postfix(dict(summary), refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
