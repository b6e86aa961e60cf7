"""The issue's first example, across real processes over TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import node
from tests.support import ROOT, NodeProcess


def test_pysyft_intro_example_over_tls(alice_process: NodeProcess) -> None:
    """x + y is computed in the node process and comes back as tensor([4, 6])."""
    assert alice_process.url.startswith("wss://127.0.0.1:")
    with node.connect(alice_process.url, cafile=alice_process.cafile) as alice:
        x = alice.send(torch.tensor([1, 2]))
        y = alice.send(torch.tensor([3, 4]))
        z = x + y
        assert torch.equal(z.get(), torch.tensor([4, 6]))
        assert alice.id == "alice"


def test_pinned_fingerprint_connects(alice_process: NodeProcess) -> None:
    """A client pinning the fingerprint printed at startup connects without a CA file."""
    with node.connect(alice_process.url, fingerprint=alice_process.fingerprint) as alice:
        assert torch.equal((alice.send(torch.ones(2)) * 3).get(), torch.full((2,), 3.0))


def test_wrong_pinned_fingerprint_is_refused(alice_process: NodeProcess) -> None:
    """A pinned fingerprint that does not match the node's certificate is refused."""
    with pytest.raises(node.CertificateMismatch):
        node.connect(alice_process.url, fingerprint="sha256:" + "0" * 64)


def test_wrong_cafile_is_refused(spawn_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Verifying alice against bob's certificate fails: checks are never disabled."""
    alice = spawn_node("alice")
    bob = spawn_node("bob")
    with pytest.raises((node.NodeUnavailable, node.TrustError)):
        node.connect(alice.url, cafile=bob.cafile)


def test_trust_on_first_use_then_mismatch(spawn_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """First contact records the fingerprint with a warning; a new key on that address is refused."""
    known = tmp_path / "known_nodes.json"
    first = spawn_node("alice")
    with pytest.warns(node.TrustOnFirstUseWarning):
        node.connect(first.url, known_nodes=known).close()
    node.connect(first.url, known_nodes=known).close()  # second time: silent, same cert
    port = first.port
    first.stop()
    # Another key answers on the same address: a man in the middle, or a rebuilt node.
    again = subprocess.Popen(
        [sys.executable, "-m", "node", "--id", "alice", "--port", str(port),
         "--state-dir", str(tmp_path / "other-state")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )
    try:
        assert again.stdout is not None and "listening" in again.stdout.readline()
        with pytest.raises(node.CertificateMismatch) as raised:
            node.connect(first.url, known_nodes=known)
        assert str(known) in str(raised.value)
    finally:
        again.terminate()
        again.wait(timeout=15)


def test_insecure_node_speaks_ws_and_warns(spawn_node) -> None:  # type: ignore[no-untyped-def]
    """--insecure nodes use ws:// and both sides warn about plaintext."""
    proc = spawn_node("plain", "--insecure")
    assert proc.url.startswith("ws://") and proc.fingerprint == "none"
    with pytest.warns(node.InsecureConnectionWarning):
        remote = node.connect(proc.url)
    with remote:
        assert torch.equal(remote.send(torch.tensor([2])).get(), torch.tensor([2]))
    proc.stop()
    assert "INSECURE" in proc.stderr()
