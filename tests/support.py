"""Helpers for tests that start real node processes on 127.0.0.1, port 0, over TLS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.server.users import UserDirectory
from peer.security.tokens import network_key, new_network_token, new_user_token, parse_user_token


ROOT = Path(__file__).resolve().parent.parent

# Authentication is on in every test, as for users: one network token for the
# gateways and nodes the tests start, one user token admitted on every node.
# Both go into the environment, so child processes and in-process clients
# (which read TESSERA_TOKEN) pick them up.
NETWORK_TOKEN = os.environ.setdefault("TESSERA_NETWORK_TOKEN", new_network_token())
USER_TOKEN = os.environ.setdefault("TESSERA_TOKEN", new_user_token("tester").text)
USER_PRINCIPAL = "user:" + parse_user_token(USER_TOKEN).user
NETWORK_KEY = network_key(NETWORK_TOKEN)


def admit_test_user(state_dir: Path) -> None:
    """Admit the tests' user (``TESSERA_TOKEN``) on the node with this state directory."""
    UserDirectory(state_dir).add(parse_user_token(USER_TOKEN))


def admit(state_dir: Path, user: str) -> str:
    """Admit a new user on the node with this state directory; its token."""
    token = new_user_token(user)
    UserDirectory(state_dir).add(token)
    return token.text
STARTUP = re.compile(r"^node (\S+) listening on (\S+) fingerprint (\S+)")


@dataclass
class NodeProcess:
    """A ``python -m node`` child process and what its startup line said."""

    node_id: str
    process: subprocess.Popen[str]
    url: str
    fingerprint: str
    state_dir: Path
    stderr_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def cafile(self) -> Path:
        return self.state_dir / "cert.pem"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def node_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TESSERA_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_node(
    tmp_path: Path, node_id: str, *args: str, state_dir: Path | None = None, timeout: float = 120
) -> NodeProcess:
    """Start a node (the test user admitted) and wait for its startup line.

    ``timeout`` is generous (120 s): the suite must pass while other work
    loads the machine, where a node's torch import alone can take tens of
    seconds; a node that printed its line late is still a node that started.
    """
    state = state_dir or tmp_path / "state" / node_id
    admit_test_user(state)
    stderr_path = tmp_path / f"{node_id}-{time.monotonic_ns()}.stderr"
    command = [sys.executable, "-m", "node", "--id", node_id, "--port", "0",
               "--state-dir", str(state), *args]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=node_env(tmp_path / "home"), cwd=ROOT,
        )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"node {node_id} did not start: {stderr_path.read_text()}")
    match = STARTUP.match(line)
    assert match, f"unexpected startup line {line!r}"
    return NodeProcess(node_id, process, match.group(2), match.group(3), state, stderr_path)


GATEWAY_STARTUP = re.compile(r"^gateway listening on (\S+) fingerprint (.+)$")


@dataclass
class GatewayProcess:
    """A ``python -m gateway`` child process and what its startup line said."""

    process: subprocess.Popen[str]
    url: str
    fingerprint: str
    state_dir: Path
    stderr_path: Path

    @property
    def cafile(self) -> Path:
        return self.state_dir / "cert.pem"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def http_url(self) -> str:
        """The status page's base URL (https, or http when insecure)."""
        return self.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def start_gateway(
    tmp_path: Path, *args: str, state_dir: Path | None = None, timeout: float = 120
) -> GatewayProcess:
    """Start a gateway on 127.0.0.1, port 0, and wait for its startup line."""
    state = state_dir or tmp_path / "state" / "gateway"
    stderr_path = tmp_path / f"gateway-{time.monotonic_ns()}.stderr"
    command = [sys.executable, "-m", "gateway", "--port", "0", "--state-dir", str(state), *args]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=node_env(tmp_path / "home"), cwd=ROOT,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        process.wait()
        raise RuntimeError(f"gateway did not start: {stderr_path.read_text()}")
    match = GATEWAY_STARTUP.match(line.rstrip("\n"))
    assert match, f"unexpected startup line {line!r}"
    return GatewayProcess(process, match.group(1), match.group(2), state, stderr_path)
