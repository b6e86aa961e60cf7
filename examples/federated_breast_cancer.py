"""Three hospitals train a breast-cancer classifier together; no row leaves a hospital.

    python examples/federated_breast_cancer.py            # 20 rounds, plot in artifacts/

Each hospital is a node process holding a third of scikit-learn's breast
cancer data (written to CSV in a temporary directory, column ``target``)
as a private dataset tagged ``#breast_cancer``; a gateway lets the data
scientist find them.  TLS and authentication are on (see
``examples/local_network.py``).  The script compares:

- **federated**: ``node.fl.FedAvg`` over the three hospitals, rounds run
  from this process (logistic regression, SGD, BCE with logits);
- **federated with secure aggregation**: ``secure_aggregation=True`` with
  a fourth node, ``charlie``, as crypto provider: each hospital
  secret-shares its sample-weighted update among charlie and the hospitals'
  nodes, which sum shares; this process only ever sees the weighted
  average (equal to plain FedAvg up to 20 fractional bits of fixed point);
- **centralised**: the same model trained on the pooled rows for as many
  epochs (what the hospitals may not do under the GDPR).

Accuracy is measured on a test split the data scientist keeps; per-round
federated accuracy also comes back as the hospitals' held-out metrics.  A
PNG plot of accuracy per round goes to ``artifacts/federated_breast_cancer.png``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.local_network import ROOT, LocalNetwork  # noqa: E402

import node  # noqa: E402
from node.fl import FedAvg  # noqa: E402

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")


def split(directory: Path) -> tuple[list[Path], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A stratification-free 80/20 split; the 80 % cut in thirds, one CSV per hospital."""
    bunch = load_breast_cancer()
    x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[: int(len(x) * 0.8)], order[int(len(x) * 0.8):]
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    paths = []
    for name, rows in zip(HOSPITALS, np.array_split(train, len(HOSPITALS))):
        path = directory / f"{name}.csv"
        np.savetxt(path, np.column_stack([x[rows], bunch.target[rows]]), delimiter=",",
                   header=header, comments="", fmt="%.17g")
        paths.append(path)
    tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return paths, tensor(x[train]), tensor(bunch.target[train]), tensor(x[test]), tensor(bunch.target[test])


def model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 1))


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((net(x).squeeze(1) > 0).float() == y).float().mean())


def centralised(x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                epochs: int) -> List[float]:
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    curve = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            batch = order[start : start + 32]
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]).squeeze(1), y[batch])
            loss.backward()
            optimizer.step()
        curve.append(accuracy(net, test_x, test_y))
    return curve


def federated(grid: node.Gateway, rounds: int, test_x: torch.Tensor, test_y: torch.Tensor,
              crypto_provider: Optional[node.RemoteNode] = None) -> List[float]:
    datasets = grid.datasets("#breast_cancer")
    print(f"found {len(datasets)} datasets: {datasets}")
    job = FedAvg(model(), datasets, rounds=rounds, local_epochs=1, batch_size=32, optimizer="sgd",
                 lr=0.1, loss="bce_with_logits", min_participants=2,
                 secure_aggregation=crypto_provider is not None, crypto_provider=crypto_provider)
    curve: List[float] = []
    job.fit(lambda record: curve.append(accuracy(job.model, test_x, test_y)))
    heldout = job.history.accuracy[-1]
    print(f"hospitals' held-out accuracy after the last round: {heldout:.3f}")
    try:
        datasets[0].features().get()
    except node.PermissionDenied as exc:
        print(f"and the rows stay home: {exc}")
    return curve


def plot(curves: Dict[str, List[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for (label, curve), style in zip(curves.items(), ("-", "--", ":")):
        axes.plot(range(1, len(curve) + 1), curve, style, marker="o", markersize=3, label=label)
    axes.set_xlabel("round (federated) / epoch (centralised)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Breast cancer: three hospitals, federated vs centralised")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    out.parent.mkdir(exist_ok=True)
    figure.savefig(out, dpi=120, bbox_inches="tight")
    print(f"plot written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tessera-breast-cancer-") as scratch:
        paths, x, y, test_x, test_y = split(Path(scratch))
        flags = {
            name: ["--dataset", f"breast_cancer={path}", "--dataset-label", "target", "--tag", "#breast_cancer",
                   "--dataset-description", "Wisconsin breast cancer, one third"]
            for name, path in zip(HOSPITALS, paths)
        }
        flags["charlie"] = []  # the crypto provider: an aggregation party holding no data
        with LocalNetwork(flags) as net:
            grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
            while len(grid.datasets("#breast_cancer")) < len(HOSPITALS) or len(grid.nodes()) < len(flags):
                time.sleep(0.05)  # the nodes are still registering
            charlie = grid.connect("charlie")
            curves: Dict[str, List[float]] = {
                "federated": federated(grid, args.rounds, test_x, test_y),
                "federated, secure aggregation": federated(grid, args.rounds, test_x, test_y, charlie),
                "centralised": centralised(x, y, test_x, test_y, args.rounds),
            }
            charlie.close()
            grid.close()
    for label, curve in curves.items():
        print(f"{label:32s} test accuracy {curve[-1]:.3f}")
    plot(curves, ROOT / "artifacts" / "federated_breast_cancer.png")


if __name__ == "__main__":
    main()
