"""``python -m gateway``: flags, startup line, one-line errors, clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from gateway.__main__ import parse
from tests.support import GATEWAY_STARTUP, ROOT, GatewayProcess, node_env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=node_env(tmp_path / "home"),
    )


def test_help_lists_every_flag(tmp_path: Path) -> None:
    """--help exits 0 and documents each flag the issue names."""
    result = _run(tmp_path, "--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--state-dir", "--insecure", "--heartbeat-seconds", "--log-level"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "http"),
        ("--port", "70000"),
        ("--port", "-1"),
        ("--bogus",),
        ("--heartbeat-seconds", "0"),
        ("--heartbeat-seconds", "soon"),
        ("--log-level", "loud"),
    ],
)
def test_bad_flags_get_one_line(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """A bad flag prints exactly one 'gateway: error:' line on stderr and exits 2."""
    with pytest.raises(SystemExit) as exited:
        parse(list(args))
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: error:"), lines


def test_bad_flag_process_shows_no_traceback(tmp_path: Path) -> None:
    """The real process with a bad flag exits 2 with one stderr line and no traceback."""
    result = _run(tmp_path, "--port", "http")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gateway: error: argument --port: invalid port 'http' (see --help)"
    ]


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults: 127.0.0.1:5000, TLS on, 2 s heartbeats, state under $TESSERA_HOME/gateway."""
    monkeypatch.setenv("TESSERA_HOME", "/srv/tessera")
    settings, level = parse([])
    assert (settings.host, settings.port, settings.insecure) == ("127.0.0.1", 5000, False)
    assert settings.heartbeat_interval == 2.0 and level == "info"
    assert settings.state_dir == Path("/srv/tessera/gateway")


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    """Binding a port that is taken fails with one line and exit 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(tmp_path, "--port", str(port), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"gateway: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in result.stderr


def test_unusable_state_dir_is_one_line(tmp_path: Path) -> None:
    """A state dir that is a regular file fails with one line naming it, exit 1."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = _run(tmp_path, "--port", "0", "--state-dir", str(blocker))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gateway: error:") and str(blocker) in last
    assert "Traceback" not in result.stderr


def test_startup_line_key_and_default_state_dir(tmp_path: Path) -> None:
    """Without --state-dir the 0600 key lives in $TESSERA_HOME/gateway; one line names URL and fingerprint."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env=node_env(tmp_path / "home"),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(r"gateway listening on wss://127\.0\.0\.1:\d+ fingerprint sha256:[0-9a-f]{64}\n", line)
        key = tmp_path / "home" / "gateway" / "key.pem"
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert (tmp_path / "home" / "gateway" / "cert.pem").exists()
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
    assert process.stdout.read() == ""  # exactly one line on stdout


def test_insecure_warns_loudly(spawn_gateway: Callable[..., GatewayProcess]) -> None:
    """--insecure announces ws:// with 'fingerprint none (insecure)' and warns on stderr."""
    proc = spawn_gateway("--insecure", "--log-level", "error")
    assert proc.url.startswith("ws://127.0.0.1:") and proc.fingerprint == "none (insecure)"
    assert proc.stop() == 0
    assert "WARNING: INSECURE: TLS is off" in proc.stderr()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_shut_down_cleanly(spawn_gateway: Callable[..., GatewayProcess], sig: int) -> None:
    """SIGINT and SIGTERM stop the gateway with exit status 0 and no traceback."""
    proc = spawn_gateway()
    assert GATEWAY_STARTUP.match(f"gateway listening on {proc.url} fingerprint {proc.fingerprint}")
    assert proc.stop(sig) == 0
    assert "Traceback" not in proc.stderr()
