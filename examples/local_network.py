"""A throwaway Tessera network on loopback for the federated examples and benchmark.

One gateway and a few nodes as separate processes, TLS and authentication
on, as in a deployment: a fresh network token (``TESSERA_NETWORK_TOKEN``)
lets the nodes register and accept each other, and each node's operator
admits the user ``scientist`` (what ``python -m node users add`` does;
done in-process here to keep start-up short), whose token goes into
``TESSERA_TOKEN`` for the client.  The gateway's key is created before
anything starts, so the gateway and every node start at once.  Everything
is stopped, and the temporary directory removed, on exit.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.server.users import UserDirectory  # noqa: E402
from peer.security.identity import ensure_identity  # noqa: E402
from peer.security.tokens import new_network_token, new_user_token, parse_user_token  # noqa: E402

STARTUP = re.compile(r"^(\S+) .*listening on (\S+) fingerprint (\S+)")

__all__ = ["LocalNetwork", "ROOT"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalNetwork:
    """``with LocalNetwork({"hospital_a": [...flags], ...}) as net:`` then ``net.gateway_url``."""

    def __init__(self, nodes: dict[str, Sequence[str]], log_level: str = "warning") -> None:
        self.nodes = nodes
        self.log_level = log_level
        self._tmp = tempfile.TemporaryDirectory(prefix="tessera-fl-")
        self.home = Path(self._tmp.name)
        self.processes: list[subprocess.Popen[str]] = []
        self.urls: dict[str, str] = {}
        self.gateway_url = ""
        self.gateway_cafile = self.home / "gateway" / "cert.pem"
        self.started_at = 0.0
        self.up_at = 0.0
        """``time.perf_counter()`` when the processes were launched, and when all printed their line."""

    def __enter__(self) -> LocalNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        os.environ["TESSERA_NETWORK_TOKEN"] = new_network_token()
        token = new_user_token("scientist")
        os.environ["TESSERA_TOKEN"] = token.text
        for name in self.nodes:
            UserDirectory(self.home / name).add(token)
        ensure_identity(self.home / "gateway", "tessera-gateway", ("127.0.0.1",))
        port = _free_port()
        self.gateway_url = f"wss://127.0.0.1:{port}"
        self.started_at = time.perf_counter()
        self._spawn(["-m", "gateway", "--port", str(port), "--state-dir", str(self.home / "gateway")])
        join = ["--gateway", self.gateway_url, "--gateway-cafile", str(self.gateway_cafile)]
        for name, flags in self.nodes.items():
            self._spawn(["-m", "node", "--id", name, "--port", "0", "--state-dir", str(self.home / name),
                         *join, *flags])
        for name, process in zip(["gateway", *self.nodes], self.processes):
            assert process.stdout is not None
            line = process.stdout.readline()
            match = STARTUP.match(line)
            if match is None:
                raise SystemExit(f"could not start {' '.join(map(str, process.args))}: {line.strip()!r}")
            self.urls[name] = match.group(2)
        self.up_at = time.perf_counter()

    def add_node(self, name: str, flags: Sequence[str] = ()) -> str:
        """Start one more node in the running network (admitted, joined to the gateway); its URL."""
        token = parse_user_token(os.environ["TESSERA_TOKEN"])
        UserDirectory(self.home / name).add(token)
        join = ["--gateway", self.gateway_url, "--gateway-cafile", str(self.gateway_cafile)]
        self._spawn(["-m", "node", "--id", name, "--port", "0", "--state-dir", str(self.home / name), *join, *flags])
        process = self.processes[-1]
        assert process.stdout is not None
        match = STARTUP.match(process.stdout.readline())
        if match is None:
            raise SystemExit(f"could not start node {name}")
        self.urls[name] = match.group(2)
        return self.urls[name]

    def _spawn(self, args: list[str]) -> None:
        self.processes.append(subprocess.Popen(
            [sys.executable, *args, "--log-level", self.log_level], stdout=subprocess.PIPE, text=True,
            cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        ))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self._tmp.cleanup()
