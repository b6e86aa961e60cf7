"""How long our processes take to start, against importing torch in the same run.

    python -m benchmarks.startup [--repeat 5] [--json PATH]

Every figure is a fresh interpreter launched from this process, timed from
launch to its first line on stdout (the moment it is ready; its exit, which
with torch loaded takes a while, is not counted), the median of
``--repeat`` launches:

- the baselines: ``python -c pass`` (the interpreter alone) and
  ``python -c "import torch"`` (what a node cannot avoid);
- ``import node`` (a user's first line; lazy, PEP 562), ``import
  node.__main__`` (everything a node process loads before it parses its
  flags) and ``import gateway.__main__``;
- a gateway and a node process (TLS, network token, an identity made on a
  first start and reused after), from launch to their "listening" line.

Each row is printed beside the ``import torch`` baseline as a ratio, and
the table is written as JSON.  A gateway never loads torch, so its rows
are expected well under 1x; a node's cannot go below it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETWORK_TOKEN = "tsn1.benchmark-startup-network-token-0123456789"


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TESSERA_HOME"] = str(home)
    env["TESSERA_NETWORK_TOKEN"] = NETWORK_TOKEN
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _import_time(code: str, env: dict[str, str]) -> float:
    """Seconds from launch until ``code`` has run (not counting the interpreter's exit)."""
    return _ready_time(["-c", f"{code}\nprint('ready', flush=True)"], env, "ready")


def _listening_time(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from launch to the process's "listening" line."""
    return _ready_time(["-m", *argv], env, "listening")


def _ready_time(argv: list[str], env: dict[str, str], marker: str) -> float:
    """Launch to the first stdout line, which must contain ``marker``; the process is then stopped."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - start
    process.terminate()
    process.wait(timeout=30)
    if marker not in line:
        raise RuntimeError(f"{argv} did not get ready: {line!r}")
    return elapsed


def measure(repeat: int) -> dict[str, float]:
    """Median seconds per row over ``repeat`` launches."""
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = _env(home)
        rows = {
            "python -c pass": lambda: _import_time("pass", env),
            "import torch": lambda: _import_time("import torch", env),
            "import node": lambda: _import_time("import node", env),
            "import node.__main__": lambda: _import_time("import node.__main__", env),
            "import gateway.__main__": lambda: _import_time("import gateway.__main__", env),
            "gateway to listening": lambda: _listening_time(
                ["gateway", "--port", "0", "--state-dir", str(home / "gateway")], env),
            "node to listening": lambda: _listening_time(
                ["node", "--id", "bench", "--port", "0", "--state-dir", str(home / "node")], env),
        }
        for _ in range(repeat):  # interleaved, so drift on a shared machine hits every row alike
            for name, run in rows.items():
                samples.setdefault(name, []).append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "startup.json")
    args = parser.parse_args()
    medians = measure(args.repeat)
    torch_s = medians["import torch"]
    print(f"{'process':<26}{'median s':>10}{'vs import torch':>18}")
    for name, seconds in medians.items():
        print(f"{name:<26}{seconds:>10.3f}{seconds / torch_s:>17.2f}x")
    result = {"repeat": args.repeat, "seconds": medians,
              "ratio_to_import_torch": {k: v / torch_s for k, v in medians.items()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
