"""Federated learning against plain PyTorch on the same task, in one run.

    python -m benchmarks.fl

sklearn digits (pixels / 16), a fixed 80/20 train/test split; an MLP
64-128-10 trained with SGD (lr 0.1, batch 32, cross entropy):

- **Tessera**: a gateway and three data-owner node processes (TLS and
  authentication on, one torch thread each, the node default), each holding
  a third of the training rows (no held-out split), and ``node.fl.FedAvg``
  in this process: 20 rounds of 1 local epoch;
- **plain PyTorch**: the same model and initial weights on the pooled
  training rows, 20 epochs, in this process (one torch thread, its fastest
  setting for this size here).

Reported: the training phase's wall time (``fit()`` against the plain
loop) and its ratio, the overhead per round ``(Tessera - plain) / rounds``,
the start-up time (processes launched -> first round started), both test
accuracies, and whether the global model equals ``node.fl.plain_fedavg``
with the same seed bit for bit.  Secure aggregation has a row of its own:
the same job with ``secure_aggregation=True`` and a fourth node,
``charlie``, as crypto provider (the hospitals' nodes and charlie are the
aggregation parties): its training time, ratio and overhead per round,
its test accuracy, and its largest difference from the plain job's
weights (bounded by the fixed-point precision, ``node.fl.secure``).  The
rows above measure the framework, so the owners publish ``digits`` with DP
off (``--no-dp``, the operator's explicit choice; else the job would not
equal ``plain_fedavg``); a DP row trains the same job on ``digits_dp``,
the same rows under the node's default policy (an empty policy file:
DP-SGD, sigma 1, clip 1, epsilon budget 10), and reports its time, test
accuracy and the epsilon it spent.  A node imports Opacus at its first
DP-SGD training, not at start (it does not need it to serve), so a
one-round DP job on a third copy of the rows, ``digits_warm`` (a budget of
its own), runs first: its round is reported as the first DP-SGD round on
fresh nodes, and the DP row is timed on warm nodes, as the plain rows are.
Table on stdout, JSON in ``artifacts/fl.json``.  Nothing is asserted: the
numbers are for people.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

from examples.local_network import ROOT, LocalNetwork

import node
from node.fl import FedAvg, Hyperparameters, plain_fedavg
from protocol.federated import RoundRecord
from protocol.secagg import DEFAULT_SECAGG_PRECISION

ROUNDS = 20
LR = 0.1
BATCH = 32
SEED = 0
OWNERS = 3


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(len(x) * 0.8)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def mlp() -> torch.nn.Sequential:
    torch.manual_seed(SEED)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def plain_pytorch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.nn.Module, float]:
    """The textbook loop on the pooled rows; its wall time."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    model.train()
    for _ in range(ROUNDS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model, time.perf_counter() - started


def federated(shards: list[tuple[torch.Tensor, torch.Tensor]], directory: Path) -> dict[str, Any]:
    nodes = {}
    for index, (x, y) in enumerate(shards):
        path = directory / f"owner_{index}.npz"
        np.savez(path, x=x.numpy(), y=y.numpy())
        defaults = directory / "default_policy.json"
        defaults.write_text("{}")  # every key left out: the built-in defaults, DP-SGD on
        nodes[f"owner_{index}"] = ["--dataset", f"digits={path}", "--dataset", f"digits_dp={path}",
                                   "--dataset", f"digits_warm={path}", "--no-dp",
                                   "--dataset-policy", f"digits_dp={defaults}",
                                   "--dataset-policy", f"digits_warm={defaults}", "--dataset-heldout", "0",
                                   "--tag", "#digits"]
    with LocalNetwork(nodes) as net:
        grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
        while len(found := grid.datasets("#digits")) < 3 * OWNERS:
            time.sleep(0.01)

        def named(name: str) -> list[Any]:
            return sorted((p for p in found if p.name == name), key=lambda p: p.node_id)

        pointers, private, warm = named("digits"), named("digits_dp"), named("digits_warm")
        job = FedAvg(mlp(), pointers, rounds=ROUNDS, local_epochs=1, batch_size=BATCH, optimizer="sgd",
                     lr=LR, loss="cross_entropy", seed=SEED, min_participants=OWNERS, progress=False)
        first: list[float] = []

        def on_round(record: RoundRecord) -> None:
            if not first:
                first.append(time.perf_counter() - record.seconds)

        started = time.perf_counter()
        job.fit(on_round)
        elapsed = time.perf_counter() - started
        net.add_node("charlie")  # the crypto provider of the secure run, started after the plain one
        secure = secure_run(grid, pointers)
        first_dp_round = dp_run(warm, rounds=1)["seconds"]
        dp = dp_run(private)
        dp["first_round_cold"] = first_dp_round
        grid.close()
        return {
            "secure": secure,
            "dp": dp,
            "job": job,
            "seconds": elapsed,
            "processes_up": net.up_at - net.started_at,
            "first_round_started": first[0] - net.started_at,
            "round_seconds": [r.seconds for r in job.history],
        }


def secure_run(grid: node.Gateway, pointers: list[Any]) -> dict[str, Any]:
    """The same job with secure aggregation among charlie and the owners' nodes."""
    while "charlie" not in {n.id for n in grid.nodes()}:
        time.sleep(0.01)
    charlie = grid.connect("charlie")
    job = FedAvg(mlp(), pointers, rounds=ROUNDS, local_epochs=1, batch_size=BATCH, optimizer="sgd",
                 lr=LR, loss="cross_entropy", seed=SEED, min_participants=OWNERS, progress=False,
                 secure_aggregation=True, crypto_provider=charlie)
    started = time.perf_counter()
    job.fit()
    elapsed = time.perf_counter() - started
    charlie.close()
    return {"job": job, "seconds": elapsed, "round_seconds": [r.seconds for r in job.history]}


def dp_run(pointers: list[Any], rounds: int = ROUNDS) -> dict[str, Any]:
    """The same job on the owners' DP datasets (default policy): DP-SGD at every owner."""
    job = FedAvg(mlp(), pointers, rounds=rounds, local_epochs=1, batch_size=BATCH, optimizer="sgd",
                 lr=LR, loss="cross_entropy", seed=SEED, min_participants=OWNERS, progress=False)
    started = time.perf_counter()
    job.fit()
    elapsed = time.perf_counter() - started
    return {"job": job, "seconds": elapsed, "epsilon": job.history.epsilon[-1]}


def table(rows: list[tuple[str, str, str]]) -> str:
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    torch.set_num_threads(1)
    x, y, test_x, test_y = data()
    shards = [(x[part], y[part]) for part in np.array_split(np.arange(len(x)), OWNERS)]
    with tempfile.TemporaryDirectory() as tmp:
        fl = federated(shards, Path(tmp))
    plain_model, plain_seconds = plain_pytorch(x, y)
    hyper = Hyperparameters(LR, 1, BATCH, "sgd", "cross_entropy", SEED)  # type: ignore[arg-type]
    reference = plain_fedavg(mlp(), shards, hyper, ROUNDS)
    job: FedAvg = fl["job"]
    equal = all(torch.equal(job.state[k], reference.state[k]) for k in reference.state)
    secure = fl["secure"]
    secure_job: FedAvg = secure["job"]
    difference = max(float((secure_job.state[k] - job.state[k]).abs().max()) for k in job.state)
    reference_model = mlp()
    reference_model.load_state_dict(reference.state)
    result = {
        "task": "sklearn digits, MLP 64-128-10, SGD lr 0.1, batch 32, 3 owners, 20 rounds x 1 epoch",
        "tessera_training_seconds": fl["seconds"],
        "plain_pytorch_seconds": plain_seconds,
        "ratio": fl["seconds"] / plain_seconds,
        "overhead_ms_per_round": 1000 * (fl["seconds"] - plain_seconds) / ROUNDS,
        "median_round_ms": 1000 * float(np.median(fl["round_seconds"])),
        "processes_up_seconds": fl["processes_up"],
        "startup_seconds": fl["first_round_started"],
        "tessera_test_accuracy": accuracy(job.model, test_x, test_y),
        "plain_pytorch_test_accuracy": accuracy(plain_model, test_x, test_y),
        "plain_fedavg_test_accuracy": accuracy(reference_model, test_x, test_y),
        "equal_to_plain_fedavg_bit_for_bit": equal,
        "secure_aggregation": {
            "training_seconds": secure["seconds"],
            "ratio": secure["seconds"] / plain_seconds,
            "overhead_ms_per_round": 1000 * (secure["seconds"] - plain_seconds) / ROUNDS,
            "median_round_ms": 1000 * float(np.median(secure["round_seconds"])),
            "test_accuracy": accuracy(secure_job.model, test_x, test_y),
            "max_abs_difference_from_plain_fedavg": difference,
            "precision_bits": DEFAULT_SECAGG_PRECISION,
        },
        "dp_sgd_default_policy": {
            "training_seconds": fl["dp"]["seconds"],
            "ratio": fl["dp"]["seconds"] / plain_seconds,
            "test_accuracy": accuracy(fl["dp"]["job"].model, test_x, test_y),
            "epsilon_spent": fl["dp"]["epsilon"],
            "delta": 1e-5,
            "first_round_on_fresh_nodes_seconds": fl["dp"]["first_round_cold"],
        },
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
    }
    rows = [
        ("figure", "Tessera (TLS)", "baseline / target"),
        ("training phase", f"{result['tessera_training_seconds']:.3f} s",
         f"plain PyTorch {plain_seconds:.3f} s; ratio {result['ratio']:.2f}x (target <= 1.25x)"),
        ("overhead per round", f"{result['overhead_ms_per_round']:.2f} ms", "target <= 3 ms"),
        ("median round", f"{result['median_round_ms']:.2f} ms", ""),
        ("start-up", f"{result['startup_seconds']:.2f} s",
         f"processes up {result['processes_up_seconds']:.2f} s; target <= 2 s to first round"),
        ("test accuracy", f"{result['tessera_test_accuracy']:.4f}",
         f"plain PyTorch {result['plain_pytorch_test_accuracy']:.4f}; "
         f"plain FedAvg {result['plain_fedavg_test_accuracy']:.4f}"),
        ("= plain FedAvg", "bit for bit" if equal else "DIFFERS", "same seed"),
        ("secure aggregation", f"{secure['seconds']:.3f} s",
         f"ratio {result['secure_aggregation']['ratio']:.2f}x; "
         f"{result['secure_aggregation']['overhead_ms_per_round']:.2f} ms/round overhead; "
         f"test accuracy {result['secure_aggregation']['test_accuracy']:.4f}; "
         f"max |w - FedAvg| {difference:.1e} after {ROUNDS} rounds"),
        ("DP-SGD (default policy)", f"{fl['dp']['seconds']:.3f} s",
         f"ratio {result['dp_sgd_default_policy']['ratio']:.2f}x; "
         f"test accuracy {result['dp_sgd_default_policy']['test_accuracy']:.4f}; "
         f"epsilon {fl['dp']['epsilon']:.2f} of 10 spent (delta 1e-5)"),
        ("first DP-SGD round", f"{fl['dp']['first_round_cold']:.3f} s",
         "on fresh nodes: each owner imports Opacus at its first DP-SGD training"),
    ]
    print(table(rows))
    out = ROOT / "artifacts" / "fl.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
