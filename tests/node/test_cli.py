"""``python -m node``: flags, startup line, one-line errors, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, NodeProcess, node_env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=node_env(tmp_path / "home"),
    )


def test_help_lists_every_flag(tmp_path: Path) -> None:
    """--help exits 0 and documents each flag the issue names."""
    result = _run(tmp_path, "--help")
    assert result.returncode == 0
    for flag in ("--id", "--host", "--port", "--state-dir", "--insecure", "--log-level"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--id", "alice", "--port", "http"),
        ("--id", "alice", "--port", "70000"),
        ("--id", "alice", "--bogus"),
        ("--port", "1"),
        ("--id", "../../etc", "--port", "0"),
        ("--id", "alice", "--log-level", "loud"),
    ],
)
def test_bad_flags_get_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A bad flag prints exactly one line on stderr, exits 2, and shows no traceback."""
    result = _run(tmp_path, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("node: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    """Binding a port that is taken fails with one line and exit 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(tmp_path, "--id", "alice", "--port", str(port), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"node: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in result.stderr


def test_unusable_state_dir_is_one_line(tmp_path: Path) -> None:
    """A state dir that is a regular file fails with one line naming it."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = _run(tmp_path, "--id", "alice", "--port", "0", "--state-dir", str(blocker))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("node: error:") and str(blocker) in last
    assert "Traceback" not in result.stderr


def test_startup_creates_private_key(spawn_node) -> None:  # type: ignore[no-untyped-def]
    """First start writes a 0600 key and a certificate whose fingerprint is printed."""
    proc: NodeProcess = spawn_node("carol")
    key_mode = stat.S_IMODE(os.stat(proc.state_dir / "key.pem").st_mode)
    assert key_mode == 0o600
    assert proc.fingerprint.startswith("sha256:") and len(proc.fingerprint) == 7 + 64


def test_default_state_dir_is_per_id(tmp_path: Path, spawn_node) -> None:  # type: ignore[no-untyped-def]
    """Without --state-dir the key lives under $TESSERA_HOME/nodes/<id>."""
    env = node_env(tmp_path / "home")
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "--id", "dave", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
    )
    try:
        assert process.stdout is not None and "listening" in process.stdout.readline()
        assert (tmp_path / "home" / "nodes" / "dave" / "cert.pem").exists()
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_shut_down_cleanly(spawn_node, sig: int) -> None:  # type: ignore[no-untyped-def]
    """SIGINT and SIGTERM stop the node with exit status 0 and no traceback."""
    proc: NodeProcess = spawn_node("erin")
    assert proc.stop(sig) == 0
    assert "Traceback" not in proc.stderr()
