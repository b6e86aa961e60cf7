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

from gateway.__main__ import main, parse
from tests.support import GATEWAY_STARTUP, ROOT, GatewayProcess, node_env


NETWORK_TOKEN_ENV = "TESSERA_NETWORK_TOKEN"


def _run(tmp_path: Path, *args: str, drop_env: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = node_env(tmp_path / "home")
    for name in drop_env:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
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


# -- the network token --------------------------------------------------------------


def test_no_token_and_not_open_is_one_line(tmp_path: Path) -> None:
    """Without a token (env removed) or --open the gateway exits 2 with one line saying how to get one."""
    result = _run(tmp_path, "--port", "0", "--state-dir", str(tmp_path / "s"), drop_env=(NETWORK_TOKEN_ENV,))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: error:"), result.stderr
    for hint in (NETWORK_TOKEN_ENV, "--token-file", "new-token", "--open"):
        assert hint in lines[0]
    assert result.stdout == "" and not (tmp_path / "s").exists()


def _parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: error:"), lines
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--token", "short"], "at least 16 characters", id="short-token"),
        pytest.param(["--token-file", "/nonexistent/token"], "/nonexistent/token", id="missing-file"),
        pytest.param(["--open", "--token", "x" * 20], "not allowed with", id="open-and-token"),
        pytest.param(["--token", "x" * 20, "--token-file", "t"], "not allowed with", id="token-and-file"),
        pytest.param([], NETWORK_TOKEN_ENV, id="nothing"),
    ],
)
def test_token_flag_errors_are_one_line(
    argv: list[str], expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad, unreadable, conflicting or missing network tokens: exit 2 with one line."""
    monkeypatch.delenv(NETWORK_TOKEN_ENV, raising=False)
    assert expected in _parse_error(argv, capsys)


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--token, then --token-file, then the environment give the token (stripped); --open gives none."""
    monkeypatch.setenv(NETWORK_TOKEN_ENV, "tsn1.from-the-environment")
    assert parse([])[0].network_token == "tsn1.from-the-environment"
    token_file = tmp_path / "token"
    token_file.write_text("\ttsn1.from-the-token-file\n")
    assert parse(["--token-file", str(token_file)])[0].network_token == "tsn1.from-the-token-file"
    assert parse(["--token", "tsn1.from-the-command-line"])[0].network_token == "tsn1.from-the-command-line"
    settings, _ = parse(["--open"])
    assert settings.network_token is None and settings.open_network is True
    assert parse([])[0].open_network is False


def test_open_gateway_starts_and_warns(tmp_path: Path, spawn_gateway: Callable[..., GatewayProcess]) -> None:
    """--open starts (no token needed) and warns on stderr that any node can register."""
    proc = spawn_gateway("--open", "--log-level", "error")
    assert proc.url.startswith("wss://127.0.0.1:")
    assert proc.stop() == 0
    assert "WARNING: OPEN NETWORK" in proc.stderr()


def test_new_token_prints_one_network_token(tmp_path: Path) -> None:
    """'python -m gateway new-token' prints exactly one tsn1. token line, fresh each time, and exits 0."""
    result = _run(tmp_path, "new-token", drop_env=(NETWORK_TOKEN_ENV,))
    assert result.returncode == 0 and result.stderr == ""
    assert re.fullmatch(r"tsn1\.[A-Za-z0-9_-]{43}\n", result.stdout)
    assert result.stdout.strip() != os.environ.get(NETWORK_TOKEN_ENV)


def test_new_token_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """'new-token' with an argument exits 1 with one line and prints no token."""
    with pytest.raises(SystemExit) as exited:
        main(["new-token", "--length", "8"])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "gateway: error: new-token takes no arguments\n"


# -- id bindings ----------------------------------------------------------------------

FP_A = "sha256:" + "a" * 64


def _bindings(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``python -m gateway bindings ...`` in-process: (exit status, stdout, stderr)."""
    try:
        main(["bindings", *argv])
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_bindings_rebind_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rebind binds an id (fingerprint normalised, 0600 file), list shows it, remove unbinds it."""
    state = ["--state-dir", str(tmp_path)]
    pasted = ":".join(["AA"] * 32)  # as openssl prints it
    code, out, _ = _bindings(["rebind", "alice", "--fingerprint", pasted, *state], capsys)
    assert code == 0 and out == f"node id 'alice' is bound to {FP_A}\n"
    assert stat.S_IMODE(os.stat(tmp_path / "bindings.json").st_mode) == 0o600
    code, out, _ = _bindings(["list", *state], capsys)
    assert code == 0 and re.fullmatch(rf"alice  {FP_A}  since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", out)
    code, out, _ = _bindings(["remove", "alice", *state], capsys)
    assert code == 0 and "unbound" in out
    code, out, err = _bindings(["list", *state], capsys)
    assert (code, out, err) == (0, "", "no node id is bound yet\n")


def test_bindings_default_to_the_gateways_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --state-dir the commands use $TESSERA_HOME/gateway, like the gateway itself."""
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    (tmp_path / "gateway").mkdir()
    assert _bindings(["rebind", "bob", "--fingerprint", FP_A], capsys)[0] == 0
    assert (tmp_path / "gateway" / "bindings.json").exists()


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        pytest.param([], 2, "gateway bindings: error:", id="no-command"),
        pytest.param(["drop", "alice"], 2, "invalid choice", id="unknown-command"),
        pytest.param(["remove"], 2, "required: ID", id="no-id"),
        pytest.param(["remove", ""], 2, "invalid node id", id="empty-id"),
        pytest.param(["remove", "x" * 129], 2, "invalid node id", id="long-id"),
        pytest.param(["rebind", "alice"], 2, "--fingerprint", id="no-fingerprint"),
        pytest.param(["rebind", "alice", "--fingerprint", "sha256:12"], 2, "invalid certificate fingerprint", id="bad-fingerprint"),
        pytest.param(["remove", "carol"], 1, "node id 'carol' is not bound", id="unbound-id"),
        pytest.param(["list", "--state-dir", "/nonexistent/gw"], 1, "does not exist", id="missing-dir"),
    ],
)
def test_bindings_errors_are_one_line(
    tmp_path: Path, argv: list[str], code: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments exit 2, an unbound id or a missing state dir exit 1: one stderr line each, nothing changed."""
    if "--state-dir" not in argv and argv:
        argv = [*argv, "--state-dir", str(tmp_path)]
    got, out, err = _bindings(argv, capsys)
    lines = err.strip().splitlines()
    assert got == code and out == "" and len(lines) == 1 and expected in lines[0], err
    assert lines[0].startswith("gateway")
    assert not (tmp_path / "bindings.json").exists()


def test_corrupt_bindings_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged bindings.json: the CLI and the gateway itself exit 1 with one line naming it, no traceback."""
    state = tmp_path / "gw"
    state.mkdir()
    (state / "bindings.json").write_text("{not json")
    code, _, err = _bindings(["list", "--state-dir", str(state)], capsys)
    assert code == 1 and err.count("\n") == 1 and "bindings.json is corrupt" in err
    result = _run(tmp_path, "--port", "0", "--state-dir", str(state))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [err.strip()] and result.stdout == ""
