"""Memory over time: 10,000 send / compute / get / delete cycles against one node.

    python -m benchmarks.soak [--cycles 10000] [--json PATH]

Reports the node's resident memory after a warm-up and at the end, once
every object has been freed.  PySyft 0.2 leaked about 100 MB per epoch; the
target is that the end is within 10% of the start.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.memory import rss

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (\S+) fingerprint (\S+)")


def cycle(remote: object, value: torch.Tensor) -> None:
    """One cycle: send, two ops, get, and drop every pointer."""
    x = remote.send(value)  # type: ignore[attr-defined]
    y = (x * 2 + 1).relu()
    assert y.get().shape == value.shape
    del x, y


def main() -> int:
    import node
    from benchmarks.credentials import admit_benchmark_user

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        admit_benchmark_user(tmp)
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "--id", "soak", "--port", "0", "--state-dir", tmp,
             "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        try:
            assert process.stdout is not None
            match = LISTENING.search(process.stdout.readline())
            assert match, "the node did not start"
            remote = node.connect(match.group(1), fingerprint=match.group(2))
            value = torch.randn(1000)
            for _ in range(500):  # warm-up: allocator pools, caches, lazy imports
                cycle(remote, value)
            gc.collect()
            remote.sync()
            start_rss = rss(process.pid)
            started = time.perf_counter()
            for _ in range(args.cycles):
                cycle(remote, value)
            elapsed = time.perf_counter() - started
            gc.collect()
            remote.sync()
            left = len(remote.objects())
            time.sleep(0.5)
            end_rss = rss(process.pid)
            remote.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    change = (end_rss - start_rss) / start_rss
    result = {
        "cycles": args.cycles,
        "seconds": elapsed,
        "cycles_per_s": args.cycles / elapsed,
        "node_rss_start_mb": start_rss / 1e6,
        "node_rss_end_mb": end_rss / 1e6,
        "change": change,
        "objects_left": left,
        "target": "|change| <= 10%, no objects left",
    }
    print(f"{args.cycles} cycles in {elapsed:.1f}s ({result['cycles_per_s']:.0f}/s); node RSS "
          f"{start_rss / 1e6:.1f} MB -> {end_rss / 1e6:.1f} MB ({change:+.1%}); objects left: {left}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0 if abs(change) <= 0.10 and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
