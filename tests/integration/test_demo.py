"""The README's demo runs end to end: gateway, two TLS nodes, discovery, compute, move."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, node_env


def test_readme_demo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """examples/demo.py prints the quickstart's real results and exits 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env=node_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "gateway listening on wss://127.0.0.1:" in out
    assert "alice    wss://127.0.0.1:" in out and "bob      wss://127.0.0.1:" in out
    assert "tensor([4, 6])" in out
    assert "bob tensor([4, 6])" in out
