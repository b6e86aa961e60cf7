"""The client's progress bar for a federated job run from this process, or awaited on a trainer node."""

from __future__ import annotations

from typing import Callable, Mapping, cast

import pytest

from node.client.fl import jobs
from node.client.fl.jobs import RemoteJob
from node.client.fl.progress import ProgressBar
from node.client.handle import NodeHandle
from node.fl.progress import round_summary
from protocol.federated import Dropout, JobStatus, JobStatusReply, OwnerPrivacy, RoundRecord
from protocol.ids import RequestId


def test_the_bar_advances_a_round_at_a_time_with_the_rounds_summary() -> None:
    """Each good round moves the bar by one and captions it with the round's summary; close ends it."""
    bar = ProgressBar(3, "FedAvg")
    record = RoundRecord(0, (0, 1), (), 100, 0.5, None, 0.01, ())
    bar.round_done(record, {"loss": "0.5000", "dropped": "1"})
    assert bar._bar.n == 1 and bar._bar.total == 3 and bar._bar.desc == "FedAvg"
    assert bar._bar.postfix == "loss=0.5000, dropped=1"
    bar.close()
    assert bar._bar.disable  # tqdm marks a closed bar disabled


class Trainer:
    """A trainer node answering ``job_status`` from a script of replies (no network)."""

    id = "trainer"

    def __init__(self, *histories: tuple[RoundRecord, ...]) -> None:
        last = len(histories) - 1
        self.replies = [
            JobStatusReply(RequestId(n), "job", JobStatus.DONE if n == last else JobStatus.RUNNING, 4, history, None)
            for n, history in enumerate(histories)
        ]

    def call(self, build: Callable[[RequestId], object], expected: type, label: str) -> object:
        assert label.startswith("job_status")
        return self.replies.pop(0)


def test_waiting_for_a_trainers_job_draws_the_same_bar_round_by_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """RemoteJob.wait advances a ProgressBar once per new round, captioned by round_summary, and closes it."""
    bars: list[Recorder] = []

    class Recorder(ProgressBar):
        def __init__(self, rounds: int, title: str) -> None:
            super().__init__(rounds, title)
            self.captions: list[dict[str, str]] = []
            bars.append(self)

        def round_done(self, record: RoundRecord, summary: Mapping[str, str]) -> None:
            self.captions.append(dict(summary))
            super().round_done(record, summary)

    monkeypatch.setattr(jobs, "ProgressBar", Recorder)
    monkeypatch.setattr(jobs, "POLL_INTERVAL", 0.0)
    first = RoundRecord(0, (0, 1), (), 100, 0.5, None, 0.01, (OwnerPrivacy(0, 0.25, 9.75),))
    second = RoundRecord(1, (0,), (Dropout(1, "timeout"),), 50, 0.4, None, 0.01, (OwnerPrivacy(0, 0.5, 9.25),))
    trainer = Trainer((), (first,), (first,), (first, second))
    history = RemoteJob(cast(NodeHandle, trainer), "job").wait()
    assert list(history) == [first, second] and history.epsilon == [0.25, 0.75]
    [bar] = bars
    assert bar._bar.desc == "FedAvg on trainer" and bar._bar.total == 4 and bar._bar.n == 2
    assert bar.captions == [round_summary(first, 0.25), round_summary(second, 0.75)]
    assert bar.captions[1] == {"epsilon": "0.75", "dropped": "1"}
    assert bar._bar.disable  # closed

    quiet = Trainer((first,), (first, second))
    assert list(RemoteJob(cast(NodeHandle, quiet), "job").wait(progress=False)) == [first, second]
    assert len(bars) == 1  # no bar at all
