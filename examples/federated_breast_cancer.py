"""Three hospitals train a breast-cancer classifier together; no row leaves a hospital.

    python examples/federated_breast_cancer.py            # 10 rounds; table and plot in artifacts/

Each hospital is a node process holding a third of scikit-learn's breast
cancer data (a CSV in a temporary directory, column ``target``), tagged
``#breast_cancer``; a gateway lets the data scientist find it.  TLS and
authentication are on (``examples/local_network.py``).  What the data
scientist may learn is the hospitals' decision, not hers: each hospital's
operator publishes its third under four names, each with its own training
policy (``--dataset-policy NAME=FILE``, printed below), and the script
compares what the same job reaches under each:

- **plain FedAvg** and **secure aggregation** on ``breast_cancer_open``,
  whose policy turns DP off (``dp = false``): the trainer could rebuild
  rows from a plain update (``tests/security/test_attack_training.py``);
  with secure aggregation (a fourth node, ``charlie``, as crypto
  provider) it sees only the weighted average of the three updates;
- **DP at epsilon 10, 3 and 1**: ``breast_cancer`` carries no policy of its
  own, so the node's safe defaults apply (DP-SGD, sigma 1.0, clip 1.0,
  epsilon budget 10, delta 1e-5, min batch 16); ``breast_cancer_eps3`` and
  ``breast_cancer_eps1`` set a smaller budget and the noise multiplier that
  lets this job (10 rounds of one epoch, batch 16) fit in it, found with the
  owner's own accountant (:func:`node.fl.epsilon_of`);
- **centralised**: the same model trained on the pooled rows for as many
  epochs (what the hospitals may not do under the GDPR).

Accuracy is measured on a test split the data scientist keeps (under DP the
hospitals return no held-out metrics: only the model is covered by the
guarantee).  The table gives the test accuracy after the last round and the
epsilon each job spent (the hospitals' own accounting, from their
``train_reply``); ``artifacts/federated_breast_cancer.png`` plots accuracy
per round and accuracy against epsilon.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.local_network import ROOT, LocalNetwork  # noqa: E402

import node  # noqa: E402
from node.fl import FedAvg, epsilon_of  # noqa: E402
from node.fl.policy import DEFAULT_DELTA_CAP, DEFAULT_EPSILON, DEFAULT_MIN_BATCH  # noqa: E402

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")
TAG = "#breast_cancer"
BATCH = DEFAULT_MIN_BATCH
"""The smallest batch the default policy allows: more, noisier steps per epsilon (DP-SGD learns better so)."""
LR = 0.5
HELDOUT = 0.2
"""Each hospital keeps a fifth of its rows for held-out metrics (the node's default)."""


@dataclass
class Run:
    """One row of the comparison: which dataset name (policy) and how the job aggregates."""

    label: str
    dataset: str
    secure: bool = False
    curve: List[float] = field(default_factory=list)
    epsilon: Optional[float] = None


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


def noise_for(epsilon: float, samples: int, rounds: int) -> float:
    """The smallest noise multiplier (to 0.01) with which ``rounds`` epochs at batch BATCH cost at most ``epsilon``.

    What an operator does to fit a known job in a budget: the owner's
    accounting (an epoch is ceil(n / batch) steps at rate 1 / that), run
    before the node starts.
    """
    steps = math.ceil(samples / BATCH)
    delta = min(DEFAULT_DELTA_CAP, samples ** -1.1)
    low, high = 0.3, 50.0
    with warnings.catch_warnings():  # large sigmas: "optimal order is the largest alpha" (a valid upper bound)
        warnings.simplefilter("ignore", UserWarning)
        while high - low > 0.01:
            middle = (low + high) / 2
            if epsilon_of([(middle, 1 / steps, steps * rounds)], delta) <= epsilon:
                high = middle
            else:
                low = middle
    return math.ceil(high * 100) / 100


def policies(directory: Path, train_rows: int, rounds: int) -> Dict[str, Dict[str, object]]:
    """Dataset name -> its policy file's contents (``breast_cancer`` has none: the defaults apply)."""
    files: Dict[str, Dict[str, object]] = {"breast_cancer_open": {"dp": False}}
    for epsilon in (3, 1):
        files[f"breast_cancer_eps{epsilon}"] = {"epsilon": epsilon, "noise_multiplier": noise_for(epsilon, train_rows,
                                                                                                 rounds)}
    for name, values in files.items():
        (directory / f"{name}.json").write_text(json.dumps(values))
    return files


def model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 1))


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((net(x).squeeze(1) > 0).float() == y).float().mean())


def centralised(x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                epochs: int) -> List[float]:
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    curve = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]).squeeze(1), y[batch])
            loss.backward()
            optimizer.step()
        curve.append(accuracy(net, test_x, test_y))
    return curve


def federated(grid: node.Gateway, run: Run, rounds: int, test_x: torch.Tensor, test_y: torch.Tensor,
              crypto_provider: Optional[node.RemoteNode]) -> None:
    datasets = [d for d in grid.datasets(TAG) if d.name == run.dataset]
    print(f"\n{run.label}: {datasets}")
    job = FedAvg(model(), datasets, rounds=rounds, local_epochs=1, batch_size=BATCH, optimizer="sgd", lr=LR,
                 loss="bce_with_logits", min_participants=len(HOSPITALS), progress=False,
                 secure_aggregation=run.secure, crypto_provider=crypto_provider if run.secure else None)
    job.fit(lambda record: run.curve.append(accuracy(job.model, test_x, test_y)))
    run.epsilon = job.history.epsilon[-1]
    left = job.history.epsilon_remaining[-1]
    spent = "no DP: no bound" if run.epsilon is None else f"epsilon {run.epsilon:.2f} spent, {left:.2f} left"
    print(f"  test accuracy {run.curve[-1]:.3f}; {spent}")


def plot(runs: List[Run], central: List[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, budget) = plt.subplots(1, 2, figsize=(12, 4.2))
    for run in runs:
        curves.plot(range(1, len(run.curve) + 1), run.curve, marker="o", markersize=3, label=run.label)
    curves.plot(range(1, len(central) + 1), central, ":", color="black", label="centralised (pooled rows)")
    curves.set_xlabel("round (federated) / epoch (centralised)")
    curves.set_ylabel("test accuracy")
    curves.set_title("Accuracy per round")
    curves.legend(loc="lower right", fontsize=8)
    curves.grid(alpha=0.3)
    private = [r for r in runs if r.epsilon is not None]
    budget.plot([r.epsilon for r in private], [r.curve[-1] for r in private], "o-", label="DP-SGD at the owners")
    for run in runs:
        if run.epsilon is None:
            budget.axhline(run.curve[-1], linestyle="--", alpha=0.6, label=f"{run.label} (no bound)")
    budget.axhline(central[-1], linestyle=":", color="black", label="centralised")
    budget.set_xscale("log")
    budget.set_xticks([r.epsilon for r in private], [f"{r.epsilon:.2g}" for r in private])
    budget.minorticks_off()
    budget.set_xlabel("epsilon spent per hospital's dataset (delta 1e-5)")
    budget.set_ylabel("test accuracy after the last round")
    budget.set_title("Accuracy against epsilon")
    budget.legend(loc="lower right", fontsize=8)
    budget.grid(alpha=0.3)
    figure.suptitle("Breast cancer, three hospitals: what each training policy lets a trainer reach")
    out.parent.mkdir(exist_ok=True)
    figure.savefig(out, dpi=120, bbox_inches="tight")
    print(f"plot written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10,
                        help="rounds per job (default 10: the default policy's budget fits 10 at batch 16)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tessera-breast-cancer-") as scratch:
        directory = Path(scratch)
        paths, x, y, test_x, test_y = split(directory)
        train_rows = len(x) // len(HOSPITALS) - round(len(x) // len(HOSPITALS) * HELDOUT)
        files = policies(directory, train_rows, args.rounds)
        print("each hospital's operator publishes its third four times, with these policies:")
        print("  breast_cancer          (no policy file: the node's defaults, DP-SGD with epsilon 10)")
        for name, values in files.items():
            print(f"  {name:22s} --dataset-policy {name}={name}.json   {json.dumps(values)}")
        flags: Dict[str, List[str]] = {}
        for hospital, path in zip(HOSPITALS, paths):
            flags[hospital] = ["--tag", TAG, "--dataset-label", "target",
                               "--dataset-description", "Wisconsin breast cancer, one third"]
            for name in ("breast_cancer", *files):
                flags[hospital] += ["--dataset", f"{name}={path}"]
            for name in files:
                flags[hospital] += ["--dataset-policy", f"{name}={directory / (name + '.json')}"]
        flags["charlie"] = []  # the crypto provider: an aggregation party holding no data
        runs = [
            Run("plain FedAvg, no DP", "breast_cancer_open"),
            Run("secure aggregation, no DP", "breast_cancer_open", secure=True),
            Run(f"DP, epsilon {DEFAULT_EPSILON:g} (defaults)", "breast_cancer"),
            Run("DP, epsilon 3", "breast_cancer_eps3"),
            Run("DP, epsilon 1", "breast_cancer_eps1"),
        ]
        with LocalNetwork(flags) as net:
            grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
            while len(grid.datasets(TAG)) < len(HOSPITALS) * 4 or len(grid.nodes()) < len(flags):
                time.sleep(0.05)  # the nodes are still registering
            charlie = grid.connect("charlie")
            for run in runs:
                federated(grid, run, args.rounds, test_x, test_y, charlie)
            try:
                grid.datasets(TAG)[0].features().get()
            except node.PermissionDenied as exc:
                print(f"\nand the rows stay home: {exc}")
            charlie.close()
            grid.close()
    central = centralised(x, y, test_x, test_y, args.rounds)
    print(f"\n{'policy':34s} {'epsilon spent':>14s} {'test accuracy':>14s}")
    for run in runs:
        spent = "inf (no DP)" if run.epsilon is None else f"{run.epsilon:.2f}"
        print(f"{run.label:34s} {spent:>14s} {run.curve[-1]:>14.3f}")
    print(f"{'centralised (pooled rows)':34s} {'-':>14s} {central[-1]:>14.3f}")
    plot(runs, central, ROOT / "artifacts" / "federated_breast_cancer.png")


if __name__ == "__main__":
    main()
