"""First rounds of federated jobs: does any wait on a connection? (issue 15)

    python -m benchmarks.first_round                  # 10 owners, 20 jobs run from this process
    python -m benchmarks.first_round --trainer        # the same jobs run by a trainer node
    python -m benchmarks.first_round --burners 2      # with every core kept busy

A gateway and ``--owners`` data-owner nodes (TLS, tokens; plain training,
``--no-dp``, so that repeated jobs spend no privacy budget), each holding a
slice of sklearn digits.  Then ``--jobs`` FedAvg jobs of ``--rounds`` rounds
one after the other.  From this process (the default) every job opens new
connections to every owner, so each job's first round pays for ten opening
handshakes; with ``--trainer`` a trainer node runs the jobs over its pooled
node-to-node links.  Before commit 16afc62 a first round now and then took
10 s more than the others: one owner's opening handshake waited for the open
time-out, and the owners were dialed one after the other.

Reported per job: the wall time of the job, round 1's seconds and the
median of the later rounds; in all: round 1's median and max, and how many
first rounds took more than 1 s longer than their job's later rounds.  JSON
in ``artifacts/first_round.json``.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

from benchmarks.handshakes import BURNERS
from examples.local_network import ROOT, LocalNetwork

import node
from node.fl import FedAvg

SLOW = 1.0
"""Seconds by which a first round may exceed its job's later rounds before it counts as a stall."""


def write_shards(directory: Path, owners: int) -> dict[str, Sequence[str]]:
    """One npz per owner, and the node flags that serve it."""
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    nodes: dict[str, Sequence[str]] = {}
    for index, part in enumerate(np.array_split(np.arange(len(x)), owners)):
        path = directory / f"owner_{index}.npz"
        np.savez(path, x=x[part], y=bunch.target[part])
        nodes[f"owner_{index:02d}"] = ["--dataset", f"digits={path}", "--no-dp", "--tag", "#digits"]
    return nodes


def mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def run_job(grid: node.Gateway, pointers: list[Any], rounds: int, trainer: Any) -> dict[str, Any]:
    job = FedAvg(mlp(), pointers, rounds=rounds, local_epochs=1, batch_size=32, lr=0.1, loss="cross_entropy",
                 min_participants=len(pointers), progress=False)
    started = time.perf_counter()
    history = trainer.fit(job).wait(progress=False) if trainer is not None else job.fit()
    seconds = [record.seconds for record in history]
    return {
        "job_seconds": time.perf_counter() - started,
        "round_seconds": seconds,
        "first_round": seconds[0],
        "later_rounds_median": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
        "dropped_in_round_1": [d.reason for d in history[0].dropped],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trainer", action="store_true", help="jobs run by a trainer node, not this process")
    parser.add_argument("--burners", type=int, default=0, help="busy processes (python loops) during the jobs")
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "first_round.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    jobs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        nodes = write_shards(Path(tmp), args.owners)
        if args.trainer:
            nodes["trainer"] = ["--role", "trainer"]
        with LocalNetwork(nodes) as net:
            grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
            while len(pointers := grid.datasets("#digits")) < args.owners:
                time.sleep(0.05)
            pointers.sort(key=lambda p: p.node_id)
            trainer = grid.connect("trainer") if args.trainer else None
            burners = [subprocess.Popen([sys.executable, "-c", BURNERS["python"]]) for _ in range(args.burners)]
            for index in range(args.jobs):
                result = run_job(grid, pointers, args.rounds, trainer)
                jobs.append(result)
                later = result["later_rounds_median"]
                print(f"job {index + 1:>2}: {result['job_seconds']:6.2f} s, round 1 {result['first_round']:6.3f} s, "
                      f"later rounds {later if later is None else round(later, 3)} s"
                      f"{', dropped ' + str(result['dropped_in_round_1']) if result['dropped_in_round_1'] else ''}",
                      flush=True)
            for burner in burners:
                burner.kill()
            if trainer is not None:
                trainer.close()
            grid.close()
    firsts = [j["first_round"] for j in jobs]
    stalls = sum(1 for j in jobs if j["first_round"] - (j["later_rounds_median"] or 0) > SLOW)
    report = {
        "owners": args.owners,
        "burners": args.burners,
        "jobs": jobs,
        "mode": "trainer node" if args.trainer else "this process",
        "first_round_median_s": statistics.median(firsts),
        "first_round_max_s": max(firsts),
        "first_rounds_more_than_1s_slower": stalls,
        "later_rounds_median_s": statistics.median(s for j in jobs for s in j["round_seconds"][1:]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=ROOT).stdout.strip(),
    }
    print(f"{args.jobs} jobs over {args.owners} owners ({report['mode']}): round 1 median "
          f"{report['first_round_median_s']:.3f} s, max {report['first_round_max_s']:.3f} s; later rounds median "
          f"{report['later_rounds_median_s']:.3f} s; first rounds > 1 s slower than later ones: {stalls}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
