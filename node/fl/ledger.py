"""Privacy accounting: what DP-SGD work costs, and what each dataset has spent.

Owns :func:`epsilon_of` and :class:`PrivacyLedger`.

Accountant: Opacus' RDP accountant (Mironov, "Renyi Differential Privacy",
2017, with the subsampled-Gaussian bound of Mironov, Talwar & Zhang 2019 and
the RDP-to-(epsilon, delta) conversion of Balle et al. 2020).  It is an
upper bound, composes mechanisms of different noise and sampling rates
exactly (RDP adds up order by order), takes milliseconds, and is exact at
sampling rate 1.  Opacus' PRV accountant gives 10-20% smaller epsilons, but
its answer is a numerical estimate with an error band, costs 0.1-0.3 s per
query and warns at sampling rate 1; a ledger that refuses work should not
depend on that.

The ledger keeps, per dataset, the mechanisms run on it as
``(noise_multiplier, sample_rate, steps)``, merging equal
``(noise_multiplier, sample_rate)`` pairs, and derives epsilon from them for
whatever delta is asked: composing in RDP is tighter than adding epsilons.
File format (JSON, written atomically with mode 0600)::

    {"version": 1, "datasets": {"cancer": [[1.1, 0.0625, 160], ...]}}

Opacus is imported on first use (about 1.5 s of CPU and 100 MB: its
package imports scipy, sympy and torch.distributed), so a node that never
trains privately never pays for it.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .errors import LedgerError, PrivacyBudgetExhausted, PrivacyConfigError
from .privacy import DpSgd, check_delta

__all__ = ["Mechanism", "epsilon_of", "PrivacyLedger", "Charged", "LEDGER_VERSION"]

LEDGER_VERSION = 1

Mechanism = Tuple[float, float, int]
"""``(noise_multiplier, sample_rate, steps)`` of a run of subsampled Gaussian steps."""


def epsilon_of(history: Sequence[Mechanism], delta: float) -> float:
    """Epsilon after composing ``(noise_multiplier, sample_rate, steps)`` mechanisms, with Opacus' RDP accountant.

    The same number as ``opacus.accountants.RDPAccountant`` with this
    history (its orders, its ``compute_rdp`` and ``get_privacy_spent``);
    the per-step RDP of each ``(noise_multiplier, sample_rate)`` is cached,
    since computing it is the slow part (0.1-0.2 s) and a dataset's rounds
    repeat the same pair.  0.0 for an empty history (or no steps), ``inf``
    if a noise multiplier is 0.
    """
    check_delta(delta)
    merged = _merge([], history)
    if not merged:
        return 0.0
    if any(sigma == 0.0 for sigma, _, _ in merged):
        return math.inf
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import get_privacy_spent

    rdp = sum(_rdp_per_step(sigma, rate) * steps for sigma, rate, steps in merged)
    epsilon, _ = get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(epsilon)


@functools.lru_cache(maxsize=1024)
def _rdp_per_step(sigma: float, rate: float) -> Any:
    """RDP of one subsampled Gaussian step at each of Opacus' default orders (a numpy array, not mutated)."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    return compute_rdp(q=rate, noise_multiplier=sigma, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS)


def _check_mechanism(sigma: object, rate: object, steps: object) -> Optional[str]:
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not (math.isfinite(sigma) and sigma >= 0):
        return "a noise multiplier must be a finite number >= 0"
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 1:
        return "a sample rate must be in (0, 1]"
    if type(steps) is not int or steps < 0:
        return "steps must be an integer >= 0"
    return None


def _merge(into: List[Mechanism], history: Sequence[Mechanism]) -> List[Mechanism]:
    """``into`` plus ``history``, equal (sigma, rate) pairs summed, zero steps dropped."""
    merged: Dict[Tuple[float, float], int] = {(s, q): n for s, q, n in into}
    for sigma, rate, steps in history:
        reason = _check_mechanism(sigma, rate, steps)
        if reason is not None:
            raise PrivacyConfigError.for_field("mechanism", (sigma, rate, steps), reason)
        if steps:
            key = (float(sigma), float(rate))
            merged[key] = merged.get(key, 0) + steps
    return [(s, q, n) for (s, q), n in merged.items()]


class PrivacyLedger:
    """Per-dataset privacy spending, persisted so a restart never resets it.

    ``path`` is a JSON file (created on the first charge, replaced atomically
    with mode 0600 on every charge); ``None`` keeps the ledger in memory.
    A file that exists but cannot be read or parsed raises
    :class:`LedgerError` here, with one line naming the file and the cause.
    Every method is thread-safe: trainings run on worker threads, and a
    charge (check, record, write) happens under one lock.  One process per
    file: two nodes sharing a state directory are not supported.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._datasets: Dict[str, List[Mechanism]] = {} if path is None else _load(path)

    @property
    def path(self) -> Optional[Path]:
        return self._path

    def history(self, dataset: str) -> List[Mechanism]:
        """The mechanisms charged to ``dataset`` so far (a copy)."""
        with self._lock:
            return list(self._datasets.get(dataset, ()))

    def spent(self, dataset: str, delta: float) -> float:
        """Epsilon spent on ``dataset`` so far, at ``delta``."""
        return epsilon_of(self.history(dataset), delta)

    def remaining(self, dataset: str, budget: float, delta: float) -> float:
        """Epsilon left of ``budget`` (never negative)."""
        _check_budget(budget)
        return max(0.0, budget - self.spent(dataset, delta))

    def charge(self, dataset: str, budget: float, dp: DpSgd, sample_rate: float, steps: int) -> Charged:
        """Record ``steps`` DP-SGD steps on ``dataset`` before they run: the epsilon they add and the total.

        Both come from the one accounting done under the lock, so the total is
        exactly what this charge left (a concurrent charge cannot slip in).

        Raises :class:`PrivacyBudgetExhausted` and records nothing if the
        spent epsilon (at ``dp.delta``) would exceed ``budget``.  The record
        is on disk before this returns, so a crash during training can only
        over-count.
        """
        _check_budget(budget)
        with self._lock:
            before = self._datasets.get(dataset, [])
            after = _merge(before, [(dp.noise_multiplier, sample_rate, steps)])
            spent = epsilon_of(before, dp.delta)
            total = epsilon_of(after, dp.delta)
            if total > budget:
                raise PrivacyBudgetExhausted.for_dataset(dataset, budget, spent, total - spent)
            if after != before:
                datasets = dict(self._datasets)
                datasets[dataset] = after
                if self._path is not None:
                    _save(self._path, datasets)
                self._datasets = datasets
            return Charged(total - spent, total)


class Charged(NamedTuple):
    """What one charge added to a dataset's epsilon, and the dataset's total after it (at its delta)."""

    added: float
    total: float


def _check_budget(budget: float) -> None:
    if type(budget) not in (int, float) or not (math.isfinite(budget) and budget > 0):
        raise PrivacyConfigError.for_field("epsilon budget", budget, "must be a finite number > 0")


def _load(path: Path) -> Dict[str, List[Mechanism]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError.for_file(path, f"cannot read it: {exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise LedgerError.for_file(path, f"not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("version") != LEDGER_VERSION:
        raise LedgerError.for_file(path, f"expected a map with version {LEDGER_VERSION}")
    datasets = document.get("datasets")
    if not isinstance(datasets, dict) or set(document) != {"version", "datasets"}:
        raise LedgerError.for_file(path, "expected exactly the keys 'version' and 'datasets'")
    return {str(name): _load_history(path, str(name), entries) for name, entries in datasets.items()}


def _load_history(path: Path, name: str, entries: object) -> List[Mechanism]:
    if not isinstance(entries, list):
        raise LedgerError.for_file(path, f"dataset {name!r}: expected a list of mechanisms")
    history: List[Mechanism] = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 3:
            raise LedgerError.for_file(path, f"dataset {name!r}: a mechanism is [noise, rate, steps]")
        sigma, rate, steps = entry
        reason = _check_mechanism(sigma, rate, steps)
        if reason is not None:
            raise LedgerError.for_file(path, f"dataset {name!r}: {reason}")
        history.append((float(sigma), float(rate), steps))
    return _merge([], history)


def _save(path: Path, datasets: Mapping[str, List[Mechanism]]) -> None:
    """Write to a 0600 temporary file in the same directory, fsync, rename over, fsync the directory."""
    document = {"version": LEDGER_VERSION, "datasets": {k: [list(m) for m in v] for k, v in datasets.items()}}
    data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:  # mkstemp creates it 0600
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise LedgerError.for_file(path, f"cannot write it: {exc}") from None
