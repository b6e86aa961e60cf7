"""The owner's audit trail: JSON lines in a 0600 file, one log line each, read back by the CLI."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from node.audit_cli import audit_main
from node.server.fl.audit import AUDIT_FILE, AuditEntry, AuditFileError, AuditLog, AuditOutcome, read_audit

SPEC = "ab" * 32


def _entry(dataset: str = "cancer", principal: str = "user:bob", outcome: AuditOutcome = AuditOutcome.TRAINED,
           reason: str | None = None, epsilon: float | None = 0.5) -> AuditEntry:
    return AuditEntry("2026-01-01T00:00:00+00:00", dataset, principal, "j1", 3, 1, SPEC, False, 120,
                      epsilon, None if epsilon is None else 9.5, outcome, reason)


def test_entries_append_to_a_private_file_and_read_back(tmp_path: Path) -> None:
    """The file is created mode 0600; entries read back equal, oldest first."""
    log = AuditLog(tmp_path)
    entries = [_entry(), _entry("digits", "node:trainer@0123", AuditOutcome.REFUSED, "min_batch", None)]
    for entry in entries:
        log.append(entry)
    path = tmp_path / AUDIT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(read_audit(path)) == entries
    assert len(path.read_text().splitlines()) == 2


def test_each_entry_is_logged_on_one_line_without_forgeable_names(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The log line quotes names (a newline cannot forge a line) and says the outcome and charge."""
    with caplog.at_level(logging.INFO, logger="tessera.node.audit"):
        AuditLog(None).append(_entry(principal="user:x\nfake line"))
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "'user:x\\nfake line'" in line
    assert "epsilon 0.5 (9.5 left): trained" in line and SPEC[:16] in line
    assert not (tmp_path / AUDIT_FILE).exists()


def test_a_missing_file_is_empty_and_a_corrupt_one_is_an_error(tmp_path: Path) -> None:
    """No trail yet reads as none; a line that is not an entry is a one-line AuditFileError."""
    assert list(read_audit(tmp_path / AUDIT_FILE)) == []
    (tmp_path / AUDIT_FILE).write_text(_entry().to_json() + "\n{not json\n")
    with pytest.raises(AuditFileError, match="line 2: not an audit entry"):
        list(read_audit(tmp_path / AUDIT_FILE))


def test_the_cli_prints_filters_and_dumps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """python -m node audit: a table (--dataset, --principal, --last filter it) or the JSON lines."""
    log = AuditLog(tmp_path)
    for index in range(3):
        log.append(_entry("cancer" if index < 2 else "digits", f"user:u{index}"))
    audit_main(["--state-dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("time\tdataset\tprincipal") and len(lines) == 4
    assert lines[1].split("\t")[1:5] == ["cancer", "user:u0", "j1", "3"]
    audit_main(["--state-dir", str(tmp_path), "--dataset", "cancer", "--last", "1"])
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()[1:]] == ["user:u1"]
    audit_main(["--state-dir", str(tmp_path), "--principal", "user:u2", "--json"])
    (dumped,) = capsys.readouterr().out.splitlines()
    assert AuditEntry.from_json(dumped).dataset == "digits"


def test_the_cli_finds_a_node_by_id_and_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--id looks under TESSERA_HOME; a corrupt trail or a bad --last is one line and a non-zero exit."""
    state = tmp_path / "nodes" / "alice"
    state.mkdir(parents=True)
    AuditLog(state).append(_entry())
    audit_main(["--id", "alice"], {"TESSERA_HOME": str(tmp_path)})
    assert "cancer" in capsys.readouterr().out
    (state / AUDIT_FILE).write_text("[]\n")
    with pytest.raises(SystemExit) as exited:
        audit_main(["--id", "alice"], {"TESSERA_HOME": str(tmp_path)})
    assert exited.value.code == 1
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        audit_main(["--id", "alice", "--last", "0"], {"TESSERA_HOME": str(tmp_path)})
    assert exited.value.code == 2
