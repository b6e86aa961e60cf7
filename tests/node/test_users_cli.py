"""``python -m node users add|revoke|list``: tokens on stdout alone, one-line errors, where files go.

Each real process spends about two seconds importing torch, so the
independent commands of this module start together, once (``runs``), and
each test checks the one it is about; the rarer error paths call
``users_main`` in-process with an injected environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.server.users import USERS_FILE, UserDirectory
from peer.security.tokens import new_user_token, parse_user_token, user_credentials, user_key
from node.users_cli import users_main
from tests.support import ROOT, node_env

SERVER = "sha256:" + "5" * 64
EXISTING = new_user_token("bob")
"""A token issued elsewhere (another node), admitted with --token-env."""


@dataclass
class Run:
    """One finished ``python -m node users ...`` process and where it worked."""

    result: subprocess.CompletedProcess[str]
    state_dir: Path

    @property
    def stderr_lines(self) -> list[str]:
        return self.result.stderr.strip().splitlines()


def _commands(root: Path) -> dict[str, tuple[list[str], dict[str, str], Path]]:
    """Name -> (argv after 'users', environment, state directory) of each independent run."""
    commands: dict[str, tuple[list[str], dict[str, str], Path]] = {}

    def add(name: str, argv: list[str], *, extra_env: dict[str, str] | None = None,
            by_id: str | None = None) -> None:
        home = root / name / "home"
        state = home / "nodes" / by_id if by_id else root / name / "state"
        where = ["--id", by_id] if by_id else ["--state-dir", str(state)]
        env = dict(node_env(home), **(extra_env or {}))
        commands[name] = ([*argv[:1], *where, *argv[1:]], env, state)

    add("add", ["add", "bob"], by_id="alice")
    add("bad-name", ["add", "Bob"])
    add("revoke-unknown", ["revoke", "nobody"])
    add("list", ["list"])
    add("token-env", ["add", "bob", "--token-env", "BOB_TOKEN"], extra_env={"BOB_TOKEN": EXISTING.text})
    add("token-env-mismatch", ["add", "carol", "--token-env", "BOB_TOKEN"],
        extra_env={"BOB_TOKEN": EXISTING.text})
    return commands


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every independent command of this module, run concurrently as real processes."""
    root = tmp_path_factory.mktemp("users-cli")
    commands = _commands(root)
    listed = UserDirectory(commands["list"][2])  # list a node that already has users
    listed.add(new_user_token("carol"))
    listed.add(new_user_token("bob"))
    started = {
        name: (subprocess.Popen(
            [sys.executable, "-m", "node", "users", *argv], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        ), argv, state)
        for name, (argv, env, state) in commands.items()
    }
    finished: dict[str, Run] = {}
    for name, (process, argv, state) in started.items():
        stdout, stderr = process.communicate(timeout=120)
        result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        finished[name] = Run(result, state)
    return finished


def _users_in(state: Path) -> set[str]:
    return set(json.loads((state / USERS_FILE).read_text())["users"])


# -- real processes ---------------------------------------------------------------


def test_add_prints_exactly_the_token(runs: dict[str, Run]) -> None:
    """add exits 0 with one stdout line, the new token, which authenticates against the file."""
    run = runs["add"]
    assert run.result.returncode == 0, run.result.stderr
    lines = run.result.stdout.splitlines()
    assert len(lines) == 1 and run.result.stdout == lines[0] + "\n"
    token = parse_user_token(lines[0])
    assert token.user == "bob" and token.text == lines[0]
    directory = UserDirectory(run.state_dir)
    assert directory.authenticate(user_credentials(token, SERVER), SERVER) == "user:bob"
    assert "Traceback" not in run.result.stderr


def test_add_by_id_uses_tessera_home(runs: dict[str, Run]) -> None:
    """--id alice writes $TESSERA_HOME/nodes/alice/users.json (and nothing else there)."""
    run = runs["add"]
    home = run.state_dir.parent.parent
    assert run.state_dir == home / "nodes" / "alice"
    assert _users_in(run.state_dir) == {"bob"}
    assert sorted(p.name for p in home.rglob("*") if p.is_file()) == [USERS_FILE]


def test_bad_name_is_one_line_exit_2(runs: dict[str, Run]) -> None:
    """A user name outside the allowed pattern exits 2 with one stderr line and writes nothing."""
    run = runs["bad-name"]
    assert run.result.returncode == 2
    assert len(run.stderr_lines) == 1, run.result.stderr
    assert run.stderr_lines[0].startswith("node users: error: invalid user name 'Bob'")
    assert run.result.stdout == ""
    assert not (run.state_dir / USERS_FILE).exists()


def test_revoking_an_unknown_user_is_one_line_exit_1(runs: dict[str, Run]) -> None:
    """revoke of a name that is not admitted exits 1 with one line naming it."""
    run = runs["revoke-unknown"]
    assert run.result.returncode == 1
    assert run.stderr_lines == ["node users: error: no user 'nobody' on this node"]
    assert run.result.stdout == ""


def test_list_shows_the_names(runs: dict[str, Run]) -> None:
    """list prints one line per user, sorted, starting with the name and no key material."""
    run = runs["list"]
    assert run.result.returncode == 0, run.result.stderr
    lines = run.result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["bob", "carol"]
    assert all("\tadded " in line for line in lines)
    for entry in UserDirectory(run.state_dir).entries():
        assert entry.key.hex() not in run.result.stdout


def test_token_env_admits_an_existing_token(runs: dict[str, Run]) -> None:
    """--token-env admits the token from that variable (same key) and does not print it."""
    run = runs["token-env"]
    assert run.result.returncode == 0, run.result.stderr
    assert run.result.stdout == "admitted bob\n"
    [entry] = UserDirectory(run.state_dir).entries()
    assert entry.name == "bob" and entry.key == user_key(EXISTING)
    assert EXISTING.text not in run.result.stdout + run.result.stderr


def test_token_env_for_another_user_is_refused(runs: dict[str, Run]) -> None:
    """A --token-env token naming another user exits 2 with one line and admits nobody."""
    run = runs["token-env-mismatch"]
    assert run.result.returncode == 2
    assert run.stderr_lines == [
        "node users: error: the token in BOB_TOKEN is for user 'bob', not 'carol' (see --help)"
    ]
    assert not (run.state_dir / USERS_FILE).exists()
    assert EXISTING.text not in run.result.stderr


# -- in-process, for the rarer error paths ----------------------------------------


def _main(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        users_main(argv, env)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_revoke_removes_the_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """revoke of an admitted user exits 0, says so, and leaves the others."""
    directory = UserDirectory(tmp_path)
    directory.add(new_user_token("bob"))
    directory.add(new_user_token("carol"))
    code, out, err = _main(["revoke", "--state-dir", str(tmp_path), "bob"], {}, capsys)
    assert (code, out, err) == (0, "revoked bob\n", "")
    assert _users_in(tmp_path) == {"carol"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, "environment variable BOB_TOKEN is not set", id="unset"),
        pytest.param({"BOB_TOKEN": ""}, "environment variable BOB_TOKEN is not set", id="empty"),
        pytest.param({"BOB_TOKEN": "tsr1.bob.tooshort"}, "BOB_TOKEN: not a Tessera user token",
                     id="malformed"),
    ],
)
def test_token_env_problems_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str], expected: str
) -> None:
    """A missing or malformed --token-env variable exits 2 with one line that does not echo it."""
    code, out, err = _main(
        ["add", "bob", "--state-dir", str(tmp_path), "--token-env", "BOB_TOKEN"], env, capsys
    )
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert "tooshort" not in err
    assert not (tmp_path / USERS_FILE).exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["list"], id="no-node"),
        pytest.param(["list", "--id", "alice", "--state-dir", "x"], id="both"),
        pytest.param(["list", "--id", "../etc"], id="bad-id"),
        pytest.param(["remove", "--id", "alice", "bob"], id="bad-command"),
        pytest.param([], id="no-command"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Missing or conflicting --id/--state-dir, a bad id or command: exit 2, one line."""
    code, out, err = _main(argv, {}, capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("node users"), err


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe"], ids=["bad-json", "not-utf8"])
def test_corrupt_users_file_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    """A damaged users.json makes list/add/revoke exit 1 with one line naming the file."""
    (tmp_path / USERS_FILE).write_bytes(content)
    for argv in (["list"], ["add", "bob"], ["revoke", "bob"]):
        code, out, err = _main([argv[0], "--state-dir", str(tmp_path), *argv[1:]], {}, capsys)
        assert code == 1 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("node users: error:"), err
        assert str(tmp_path / USERS_FILE) in lines[0]
    assert (tmp_path / USERS_FILE).read_bytes() == content
