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

from node.__main__ import parse
from tests.support import ROOT, NodeProcess, node_env

NETWORK_TOKEN_ENV = "TESSERA_NETWORK_TOKEN"


def _run(tmp_path: Path, *args: str, drop_env: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = node_env(tmp_path / "home")
    for name in drop_env:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )


def _parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a parse that must exit 2."""
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("node: error:"), lines
    return lines[0]


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
        ("--id", "alice", "--trust-crypto-provider", "sha256:not-a-fingerprint"),
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


# -- the network token --------------------------------------------------------------


def test_gateway_without_a_network_token_is_one_line(tmp_path: Path) -> None:
    """--gateway with no TESSERA_NETWORK_TOKEN and no token file exits 2, one line naming the variable."""
    result = _run(
        tmp_path, "--id", "alice", "--port", "0", "--state-dir", str(tmp_path / "s"),
        "--gateway", "wss://127.0.0.1:5000", drop_env=(NETWORK_TOKEN_ENV,),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("node: error:"), result.stderr
    assert NETWORK_TOKEN_ENV in lines[0] and "--network-token-file" in lines[0]
    assert result.stdout == "" and not (tmp_path / "s").exists()


def test_gateway_needs_the_token_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """parse() refuses --gateway without a token, and accepts it once the variable is set."""
    monkeypatch.delenv(NETWORK_TOKEN_ENV, raising=False)
    argv = ["--id", "alice", "--gateway", "wss://127.0.0.1:5000"]
    assert NETWORK_TOKEN_ENV in _parse_error(argv, capsys)
    monkeypatch.setenv(NETWORK_TOKEN_ENV, "  tsn1.a-long-enough-network-token \n")
    settings, _ = parse(argv)
    assert settings.network_token == "tsn1.a-long-enough-network-token"


def test_missing_network_token_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --network-token-file that cannot be read exits 2 with one line naming the file."""
    missing = tmp_path / "no-such-token"
    line = _parse_error(["--id", "alice", "--network-token-file", str(missing)], capsys)
    assert str(missing) in line and "cannot read the network token file" in line


def test_short_network_token_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A token file holding fewer than 16 characters exits 2 with one line, not echoing the token."""
    short = tmp_path / "token"
    short.write_text("tsn1.shorty\n")
    line = _parse_error(["--id", "alice", "--network-token-file", str(short)], capsys)
    assert "at least 16 characters" in line and "tsn1.shorty" not in line


def test_short_network_token_in_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A too-short TESSERA_NETWORK_TOKEN is refused at startup, even without --gateway."""
    monkeypatch.setenv(NETWORK_TOKEN_ENV, "short")
    assert "at least 16 characters" in _parse_error(["--id", "alice"], capsys)


def test_token_file_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--network-token-file is used (stripped) in preference to TESSERA_NETWORK_TOKEN."""
    monkeypatch.setenv(NETWORK_TOKEN_ENV, "tsn1.the-environment-token")
    token_file = tmp_path / "token"
    token_file.write_text("tsn1.the-file-network-token\n")
    settings, _ = parse(["--id", "alice", "--network-token-file", str(token_file)])
    assert settings.network_token == "tsn1.the-file-network-token"


def test_anonymous_is_off_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes refuse anonymous clients by default; --allow-anonymous turns them on."""
    monkeypatch.delenv(NETWORK_TOKEN_ENV, raising=False)
    assert parse(["--id", "alice"])[0].allow_anonymous is False
    assert parse(["--id", "alice"])[0].network_token is None
    assert parse(["--id", "alice", "--allow-anonymous"])[0].allow_anonymous is True
