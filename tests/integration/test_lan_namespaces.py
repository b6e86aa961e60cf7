"""Five hosts in network namespaces: a gateway, three nodes and a client.

The client finds the nodes through the gateway, runs the quickstart on
alice and moves the result to bob, node to node.  Skipped (with the reason)
only where namespaces cannot be created.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.netns import Lan, NamespacesUnavailable
from tests.support import ROOT, node_env, admit_test_user

STARTUP = re.compile(r"listening on (\S+) fingerprint (\S+)")


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lan, Path]]:
    tmp = tmp_path_factory.mktemp("lan")
    try:
        with Lan() as network:
            for host in ("gateway", "alice", "bob", "carol", "client"):
                network.add_host(host)
            yield network, tmp
    except NamespacesUnavailable as exc:
        pytest.skip(f"network namespaces unavailable here: {exc}")


def _start(network: Lan, tmp: Path, host: str, args: list[str]) -> tuple[str, str]:
    env = node_env(tmp / host / "home")
    process = network.popen(host, [sys.executable, *args], env, ROOT, tmp / f"{host}.stderr")
    assert process.stdout is not None
    line = process.stdout.readline()
    match = STARTUP.search(line)
    assert match, f"{host} did not start: {line!r} {(tmp / f'{host}.stderr').read_text()}"
    return match.group(1), match.group(2)


def test_client_discovers_nodes_and_moves_data_across_hosts(lan: tuple[Lan, Path]) -> None:
    """Quickstart on alice and a move to bob, all through addresses of separate hosts."""
    network, tmp = lan
    gateway_ip = network.hosts["gateway"]
    gateway_url, gateway_fp = _start(
        network, tmp, "gateway",
        ["-m", "gateway", "--host", gateway_ip, "--port", "5000", "--state-dir", str(tmp / "gw")],
    )
    assert gateway_url == f"wss://{gateway_ip}:5000"
    for name in ("alice", "bob", "carol"):
        admit_test_user(tmp / name)  # the client's user, as each operator would admit it
        url, _ = _start(
            network, tmp, name,
            ["-m", "node", "--id", name, "--host", network.hosts[name], "--port", "8765",
             "--state-dir", str(tmp / name), "--gateway", gateway_url,
             "--gateway-fingerprint", gateway_fp],
        )
        assert url == f"wss://{network.hosts[name]}:8765"
    result = network.run(
        "client",
        [sys.executable, str(ROOT / "examples" / "lan" / "client.py"), "--gateway", gateway_url,
         "--gateway-fingerprint", gateway_fp],
        node_env(tmp / "client" / "home"), ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("alice", "bob", "carol"):
        assert f"found {name} at wss://{network.hosts[name]}:8765" in out
    assert "z = x + y on alice: tensor([4, 6])" in out
    assert "after z.move(bob): z lives on bob: tensor([4, 6])" in out


def test_hosts_have_separate_network_stacks(lan: tuple[Lan, Path]) -> None:
    """From the client host, alice answers on her LAN address but not on 127.0.0.1."""
    network, tmp = lan
    probe = (
        "import socket,sys\n"
        "def reach(host):\n"
        " s=socket.socket(); s.settimeout(3)\n"
        " try:\n  s.connect((host, 8765)); return True\n"
        " except OSError: return False\n"
        f"sys.exit(0 if reach('{network.hosts['alice']}') and not reach('127.0.0.1') else 1)\n"
    )
    result = network.run("client", [sys.executable, "-c", probe], node_env(tmp), ROOT, timeout=30)
    assert result.returncode == 0, "the client host is not separate from alice's"
