"""The owner's audit trail: every ``train`` asked of one of its datasets, and what came of it.

Owns :class:`AuditEntry` (one line: when, which dataset, which principal,
job and round, the model spec's SHA-256, the training rows, the epsilon
charged and left, and the outcome) and :class:`AuditLog`, which appends
entries as JSON lines to ``audit.jsonl`` in the node's state directory
(created mode 0600) and logs each one.  :func:`read_audit` reads the file
back for ``python -m node audit`` (:mod:`node.audit_cli`).

An entry holds the operator's limits and the request's own fields, never a
value derived from the data: an outcome is ``trained``, ``refused`` (with
the policy rule) or ``failed`` (with the error code, never its message,
which could quote the data).  Appends are serialised by a lock and may run
on any thread (``train`` runs in a worker thread); must not import asyncio
or websockets.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["AUDIT_FILE", "AuditOutcome", "AuditEntry", "AuditLog", "AuditFileError", "read_audit"]

log = logging.getLogger("tessera.node.audit")

AUDIT_FILE = "audit.jsonl"
"""The audit trail's file name in the node's state directory."""


class AuditOutcome(str, enum.Enum):
    """What became of a ``train``."""

    TRAINED = "trained"
    REFUSED = "refused"
    """The dataset's policy refused it before any work (``reason``: the rule)."""
    FAILED = "failed"
    """It failed after the checks (``reason``: the error code)."""


class AuditFileError(Exception):
    """The audit file cannot be read (the CLI prints it as one line)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One ``train`` on one of the node's datasets."""

    time: str
    """UTC, ISO 8601 with seconds."""
    dataset: str
    principal: str
    job_id: Optional[str]
    round: int
    owner_index: int
    spec_sha256: str
    secure: bool
    samples: int
    """Training rows the update was (or would have been) computed from."""
    epsilon: Optional[float]
    """Charged to the dataset's DP budget (``None``: DP off, or refused before charging)."""
    epsilon_remaining: Optional[float]
    outcome: AuditOutcome
    reason: Optional[str] = None

    @staticmethod
    def now() -> str:
        return datetime.now(timezone.utc).isoformat(timespec="seconds")

    def to_json(self) -> str:
        body = asdict(self)
        body["outcome"] = self.outcome.value
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> AuditEntry:
        body = json.loads(line)
        if not isinstance(body, dict):
            raise ValueError("not a map")
        body["outcome"] = AuditOutcome(body["outcome"])
        return cls(**body)

    def describe(self) -> str:
        """One log line (request fields and counts only, names quoted so no newline can forge a line)."""
        epsilon = "DP off" if self.epsilon is None else f"epsilon {self.epsilon:.4g} ({self.epsilon_remaining:.4g} left)"
        outcome = self.outcome.value + (f" ({self.reason})" if self.reason else "")
        return (
            f"train on {self.dataset!r} by {self.principal!r}: job {self.job_id!r} round {self.round} "
            f"owner {self.owner_index}{' secure' if self.secure else ''}, spec {self.spec_sha256[:16]}, "
            f"{self.samples} samples, {epsilon}: {outcome}"
        )


class AuditLog:
    """Appends entries to ``<state dir>/audit.jsonl`` (mode 0600) and to the node's log.

    ``directory`` ``None`` keeps the trail in the log only (in-process test nodes).
    """

    def __init__(self, directory: Optional[Path]) -> None:
        self.path = None if directory is None else directory / AUDIT_FILE
        self._lock = threading.Lock()

    def append(self, entry: AuditEntry) -> None:
        """Record ``entry`` (blocking file I/O: call it off the event loop)."""
        log.info("%s", entry.describe())
        if self.path is None:
            return
        line = (entry.to_json() + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


def read_audit(path: Path) -> Iterator[AuditEntry]:
    """Entries of an audit file, oldest first; a missing file has none."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuditFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield AuditEntry.from_json(line)
            except (ValueError, TypeError, KeyError) as exc:
                raise AuditFileError(f"{path} line {number}: not an audit entry ({type(exc).__name__})") from None
