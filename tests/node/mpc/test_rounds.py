"""The in-process driver of round protocols: rounds counted, disagreements refused."""

from __future__ import annotations

import pytest
import torch

from node.mpc.errors import PartyError
from node.mpc.rounds import Opening, Opened, RoundProtocol, run_local


def _open_twice(share: torch.Tensor) -> RoundProtocol:
    opened: Opened = yield Opening((share,))
    total = sum(values[0] for values in opened)
    opened = yield Opening((total * 0,))
    return total + sum(values[0] for values in opened)


def _no_round(share: torch.Tensor) -> RoundProtocol:
    return share
    yield  # pragma: no cover - makes this a generator


def test_every_party_sees_every_opening_in_order() -> None:
    shares = [torch.tensor([1, 2]), torch.tensor([10, 20]), torch.tensor([100, 200])]
    results, rounds = run_local([_open_twice(s) for s in shares])
    assert rounds == 2
    assert all(torch.equal(r, torch.tensor([111, 222])) for r in results)


def test_a_protocol_without_openings_returns_its_result() -> None:
    results, rounds = run_local([_no_round(torch.tensor(3)), _no_round(torch.tensor(4))])
    assert rounds == 0 and [int(r) for r in results] == [3, 4]


def test_parties_disagreeing_on_rounds_are_refused() -> None:
    with pytest.raises(PartyError, match="number of rounds"):
        run_local([_open_twice(torch.tensor(1)), _no_round(torch.tensor(2))])
