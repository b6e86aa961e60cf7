"""A job's history: the epsilon curve kept as rounds are appended, and its latest value."""

from __future__ import annotations

from node.fl.history import History
from protocol.federated import OwnerPrivacy, RoundRecord


def _record(round_index: int, *charges: OwnerPrivacy) -> RoundRecord:
    return RoundRecord(round_index, (0, 1), (), 100, 0.5, None, 0.01, charges)


def test_the_epsilon_curve_is_the_most_charged_owners_running_total() -> None:
    """Per round the largest per-owner sum so far; ``epsilon_spent`` is its last value, also for a rebuilt history."""
    records = [
        _record(0),
        _record(1, OwnerPrivacy(0, 0.5, 9.5), OwnerPrivacy(1, 0.25, 9.75)),
        _record(2, OwnerPrivacy(1, 0.5, 9.25)),
        _record(3),
    ]
    history = History()
    assert history.epsilon == [] and history.epsilon_spent is None
    history.append(records[0])
    assert history.epsilon == [None] and history.epsilon_spent is None
    for record in records[1:]:
        history.append(record)
        assert history.epsilon_spent == history.epsilon[-1]
    assert history.epsilon == [None, 0.5, 0.75, 0.75]
    assert History(records).epsilon == history.epsilon and History(records).epsilon_spent == 0.75
    history.epsilon.append(1.0)  # the curve handed out is a copy
    assert history.epsilon_spent == 0.75 and len(history.epsilon) == 4
