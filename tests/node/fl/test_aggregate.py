"""FedAvg aggregation: the weighted-average math and its refusals."""

from __future__ import annotations

import pytest
import torch

from node.fl.aggregate import fedavg, round_result, weighted_metrics
from node.fl.errors import AggregationError
from node.fl.results import LocalResult, Metrics


def _states() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"w": torch.randn(3, 2, generator=generator), "count": torch.tensor(c, dtype=torch.int64)}
        for c in (10, 11, 15)
    ]


def test_weighted_average_matches_manual_computation() -> None:
    """Float tensors are averaged by sample count, integers rounded to the nearest."""
    states = _states()
    averaged = fedavg(states, [1, 2, 3])
    manual = (states[0]["w"] * 1 + states[1]["w"] * 2 + states[2]["w"] * 3) / 6
    assert averaged["w"].dtype == torch.float32
    assert torch.allclose(averaged["w"], manual, atol=1e-6)
    assert averaged["count"].dtype == torch.int64 and int(averaged["count"]) == 13  # 77 / 6 = 12.83
    assert list(averaged) == ["w", "count"]


def test_integer_buffers_round_half_to_even() -> None:
    """An integer mean exactly between two integers rounds to the even one."""
    states = [{"n": torch.tensor(1)}, {"n": torch.tensor(4)}]
    assert int(fedavg(states, [1, 1])["n"]) == 2  # 2.5 -> 2


def test_single_update_is_returned_unchanged() -> None:
    """Averaging one update gives it back exactly."""
    states = _states()[:1]
    assert torch.equal(fedavg(states, [7])["w"], states[0]["w"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.pop("w"), "keys differ"),
        (lambda s: s.update({"extra": torch.zeros(1)}), "keys differ"),
        (lambda s: s.update({"w": torch.zeros(2, 3)}), "(2, 3)"),
        (lambda s: s.update({"w": torch.zeros(3, 2, dtype=torch.float64)}), "float64"),
        (lambda s: s.update({"w": [[0.0, 0.0]] * 3}), "not a tensor"),
    ],
)
def test_mismatched_updates_are_refused(change: object, reason: str) -> None:
    """An update whose keys, shapes or dtypes differ from the first is refused by index."""
    states = _states()
    change(states[2])  # type: ignore[operator]
    with pytest.raises(AggregationError, match=reason) as caught:
        fedavg(states, [1, 1, 1])
    assert caught.value.details["index"] == 2


@pytest.mark.parametrize("weights", [[1, 1], [1, 0, 1], [1, -1, 1], [1, 1.5, 1], [1, True, 1]])
def test_bad_weights_are_refused(weights: list[object]) -> None:
    """Sample counts must be one positive integer per update."""
    with pytest.raises(AggregationError):
        fedavg(_states(), weights)  # type: ignore[arg-type]


def test_no_updates_and_bool_tensors_are_refused() -> None:
    """No updates, or a bool tensor, cannot be averaged."""
    with pytest.raises(AggregationError, match="no updates"):
        fedavg([], [])
    with pytest.raises(AggregationError, match="bool"):
        fedavg([{"m": torch.tensor([True])}], [1])


def test_weighted_metrics() -> None:
    """Loss and accuracy are sample-weighted; owners without held-out rows are skipped."""
    merged = weighted_metrics([Metrics(1.0, 0.5, 10), None, Metrics(2.0, 1.0, 30)])
    assert merged == Metrics(1.75, 0.875, 40)
    assert weighted_metrics([Metrics(1.0, None, 10), Metrics(3.0, None, 10)]) == Metrics(2.0, None, 20)
    assert weighted_metrics([None]) is None


def test_round_result_weights_training_loss() -> None:
    """A round's training loss is weighted by each owner's training samples."""
    states = _states()
    results = [
        LocalResult(states[0], 1, 4.0, Metrics(1.0, 0.5, 2)),
        LocalResult(states[1], 3, 2.0, None),
    ]
    outcome = round_result(fedavg([r.state for r in results], [r.samples for r in results]), results)
    assert outcome.samples == 4 and outcome.train_loss == 2.5
    assert outcome.heldout == Metrics(1.0, 0.5, 2)
    assert torch.allclose(outcome.state["w"], (states[0]["w"] + 3 * states[1]["w"]) / 4)
