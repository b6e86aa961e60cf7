"""The client's progress bar for a federated job run from this process."""

from __future__ import annotations

from node.client.fl.progress import ProgressBar
from protocol.federated import RoundRecord


def test_the_bar_advances_a_round_at_a_time_with_the_rounds_summary() -> None:
    """Each good round moves the bar by one and captions it with the round's summary; close ends it."""
    bar = ProgressBar(3, "FedAvg")
    record = RoundRecord(0, (0, 1), (), 100, 0.5, None, 0.01, ())
    bar.round_done(record, {"loss": "0.5000", "dropped": "1"})
    assert bar._bar.n == 1 and bar._bar.total == 3 and bar._bar.desc == "FedAvg"
    assert bar._bar.postfix == "loss=0.5000, dropped=1"
    bar.close()
    assert bar._bar.disable  # tqdm marks a closed bar disabled
