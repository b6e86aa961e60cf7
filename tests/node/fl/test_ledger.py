"""Privacy accounting: epsilon matches Opacus and the Gaussian closed form; the ledger persists and refuses."""

from __future__ import annotations

import json
import math
import stat
import threading
from pathlib import Path
from typing import List

import pytest
from opacus.accountants import RDPAccountant

from protocol.errors import ErrorCode, PermissionDenied

from node.fl.errors import LedgerError, PrivacyBudgetExhausted, PrivacyConfigError
from node.fl.ledger import PrivacyLedger, epsilon_of
from node.fl.privacy import DpSgd

DELTA = 1e-5
DP = DpSgd(1.1, 1.0, DELTA)


def _gaussian_closed_form(sigma: float, steps: int, delta: float) -> float:
    """Full-batch Gaussian mechanism: RDP alpha*steps/(2 sigma^2), converted as Balle et al. 2020 (Opacus' orders)."""
    best = math.inf
    for alpha in RDPAccountant.DEFAULT_ALPHAS:
        rdp = alpha * steps / (2 * sigma**2)
        eps = rdp - (math.log(delta) + math.log(alpha)) / (alpha - 1) + math.log((alpha - 1) / alpha)
        best = min(best, eps)
    return best


def test_full_batch_epsilon_is_the_gaussian_closed_form() -> None:
    """At sample rate 1, epsilon is the Gaussian mechanism's, composed over the steps."""
    for sigma, steps in ((1.0, 1), (2.0, 10), (0.8, 3)):
        assert epsilon_of([(sigma, 1.0, steps)], DELTA) == pytest.approx(_gaussian_closed_form(sigma, steps, DELTA))


def test_epsilon_matches_opacus_stepped_one_by_one() -> None:
    """Composing (sigma, q, steps) records equals Opacus' accountant fed the same steps one at a time."""
    history = [(1.1, 1 / 15, 30), (0.9, 0.25, 8), (1.1, 1 / 15, 15)]
    accountant = RDPAccountant()
    for sigma, rate, steps in history:
        for _ in range(steps):
            accountant.step(noise_multiplier=sigma, sample_rate=rate)
    assert epsilon_of(history, DELTA) == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-9)
    # Opacus' DP-SGD example figure: sigma 1.1, q 256/60000, 60 epochs, delta 1e-5 -> epsilon about 2.6 (RDP).
    assert epsilon_of([(1.1, 256 / 60000, 60 * 235)], DELTA) == pytest.approx(2.60, abs=0.01)


def test_epsilon_grows_with_steps_and_shrinks_with_noise() -> None:
    """More steps or a higher sampling rate cost more; more noise costs less; nothing costs nothing."""
    costs = [epsilon_of([(1.0, 0.1, steps)], DELTA) for steps in (1, 10, 100, 1000)]
    assert costs == sorted(costs) and len(set(costs)) == 4
    assert epsilon_of([(1.0, 0.2, 10)], DELTA) > epsilon_of([(1.0, 0.1, 10)], DELTA)
    assert epsilon_of([(2.0, 0.1, 10)], DELTA) < epsilon_of([(1.0, 0.1, 10)], DELTA)
    assert epsilon_of([], DELTA) == 0.0 and epsilon_of([(1.0, 0.1, 0)], DELTA) == 0.0
    with pytest.raises(PrivacyConfigError):
        epsilon_of([(1.0, 1.5, 3)], DELTA)
    with pytest.raises(PrivacyConfigError):
        epsilon_of([(1.0, 0.5, 3)], 0.0)


def test_ledger_persists_across_instances(tmp_path: Path) -> None:
    """Spending survives a new ledger on the same file, which is JSON and mode 0600."""
    path = tmp_path / "state" / "privacy.json"
    ledger = PrivacyLedger(path)
    assert ledger.spent("cancer", DELTA) == 0.0 and not path.exists()
    added, total = ledger.charge("cancer", 10.0, DP, 1 / 15, 15)
    again, total_again = ledger.charge("cancer", 10.0, DP, 1 / 15, 15)
    assert added > 0 and again > 0
    assert total == pytest.approx(added) and total_again == pytest.approx(ledger.spent("cancer", DELTA))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reopened = PrivacyLedger(path)
    assert reopened.history("cancer") == [(1.1, 1 / 15, 30)]
    assert reopened.spent("cancer", DELTA) == pytest.approx(added + again)
    assert reopened.spent("cancer", DELTA) == pytest.approx(epsilon_of([(1.1, 1 / 15, 30)], DELTA))
    assert reopened.spent("other", DELTA) == 0.0
    assert reopened.remaining("cancer", 10.0, DELTA) == pytest.approx(10.0 - added - again)
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["privacy.json"]


def test_charge_past_the_budget_is_refused_and_records_nothing(tmp_path: Path) -> None:
    """A charge that would exceed the budget raises PERMISSION_DENIED; spent and the file are unchanged."""
    path = tmp_path / "privacy.json"
    ledger = PrivacyLedger(path)
    first, _ = ledger.charge("cancer", 3.0, DP, 1 / 15, 15)
    saved = path.read_bytes()
    with pytest.raises(PrivacyBudgetExhausted) as caught:
        ledger.charge("cancer", 3.0, DP, 1.0, 5)
    assert isinstance(caught.value, PermissionDenied) and caught.value.code is ErrorCode.PERMISSION_DENIED
    assert caught.value.details["dataset"] == "cancer" and caught.value.details["budget"] == 3.0
    assert "\n" not in str(caught.value)
    assert ledger.spent("cancer", DELTA) == pytest.approx(first)
    assert path.read_bytes() == saved
    assert ledger.remaining("cancer", first / 2, DELTA) == 0.0
    assert ledger.charge("cancer", 3.0, DP, 1 / 15, 0).added == 0.0


def test_concurrent_charges_never_overspend() -> None:
    """Threads racing for a budget that fits exactly three charges: exactly three succeed."""
    ledger = PrivacyLedger(None)
    one = (DP.noise_multiplier, 0.1, 20)
    budget = (epsilon_of([one] * 3, DELTA) + epsilon_of([one] * 4, DELTA)) / 2
    outcomes: List[bool] = []
    barrier = threading.Barrier(6)

    def charge() -> None:
        barrier.wait()
        try:
            ledger.charge("cancer", budget, DP, 0.1, 20)
            outcomes.append(True)
        except PrivacyBudgetExhausted:
            outcomes.append(False)

    threads = [threading.Thread(target=charge) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 3 + [True] * 3
    assert ledger.history("cancer") == [(DP.noise_multiplier, 0.1, 60)]


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"version": 2, "datasets": {}}', b'{"version": 1}',
    b'{"version": 1, "datasets": {"d": [[1.0, 0.1]]}}', b'{"version": 1, "datasets": {"d": [[1.0, 2.0, 3]]}}',
    b'{"version": 1, "datasets": {"d": [[NaN, 0.5, 3]]}}', b'{"version": 1, "datasets": {"d": [[1.0, 0.5, -1]]}}',
    b"\xff\xfe",
])
def test_corrupt_ledger_is_a_one_line_typed_error(tmp_path: Path, content: bytes) -> None:
    """A ledger file that does not parse raises LedgerError naming the file, on one line."""
    path = tmp_path / "privacy.json"
    path.write_bytes(content)
    with pytest.raises(LedgerError) as caught:
        PrivacyLedger(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message


def test_budget_must_be_positive() -> None:
    """A budget that is not a finite positive number is a configuration error."""
    ledger = PrivacyLedger(None)
    for budget in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(PrivacyConfigError):
            ledger.charge("d", budget, DP, 0.1, 1)
