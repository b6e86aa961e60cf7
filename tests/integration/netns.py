"""Hosts for multi-host tests: Linux network namespaces joined by a bridge.

Each host is a namespace with one veth interface on a private /24; the
bridge lives in a namespace of its own, so nothing is added to the machine's
own network stack and no traffic leaves the namespaces.  Everything created
is removed on exit, processes first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

SUBNET = "10.213.7"


class NamespacesUnavailable(Exception):
    """This machine (or user) cannot create network namespaces."""


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NamespacesUnavailable(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass
class Lan:
    """A switch namespace plus named host namespaces with addresses."""

    prefix: str = field(default_factory=lambda: f"tsr{os.getpid() % 100000}")
    hosts: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def __enter__(self) -> Lan:
        if shutil.which("ip") is None:
            raise NamespacesUnavailable("the 'ip' command (iproute2) is not installed")
        _ip("netns", "add", self.switch)
        try:
            _ip("link", "add", "br0", "type", "bridge", netns=self.switch)
            _ip("link", "set", "br0", "up", netns=self.switch)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def add_host(self, host: str) -> str:
        """Create a host namespace wired to the bridge; returns its address."""
        address = f"{SUBNET}.{len(self.hosts) + 1}"
        ns = self.namespace(host)
        _ip("netns", "add", ns)
        self.hosts[host] = address
        port = f"p{len(self.hosts)}"
        _ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=self.switch)
        _ip("link", "set", port, "master", "br0", "up", netns=self.switch)
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        return address

    def popen(self, host: str, command: list[str], env: dict[str, str], cwd: Path,
              stderr: Path) -> subprocess.Popen[str]:
        """Start ``command`` inside ``host``'s namespace."""
        with open(stderr, "w") as err:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace(host), *command],
                stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=cwd,
            )
        self.processes.append(process)
        return process

    def run(self, host: str, command: list[str], env: dict[str, str], cwd: Path,
            timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(host), *command],
            capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
        )

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for host in list(self.hosts):
            subprocess.run(["ip", "netns", "del", self.namespace(host)], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True)
