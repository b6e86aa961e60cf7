"""An MLP learns handwritten digits from three nodes' private shards.

    python examples/federated_digits.py                 # rounds run from this process
    python examples/federated_digits.py --trainer       # rounds run by a trainer node

scikit-learn's digits (pixels / 16): 80 % cut in thirds, one ``.npz`` per
data-owner node (tag ``#digits``), 20 % kept here for testing.  An MLP
64-128-10 trains with ``node.fl.FedAvg`` (SGD, lr 0.5, batch 32, cross
entropy; lr 0.5 rather than 0.1 because DP-SGD clips each sample's
gradient to norm 1).  The clinics publish with the node's default training policy:
each trains with DP-SGD (sigma 1, clip 1) and charges its dataset's
epsilon budget of 10, which 20 rounds at batch 32 fit (about 9.95 at delta
1e-5 for 383 rows); a 21st round would be refused.  Under DP the clinics
return no held-out metrics, so accuracy is measured on the test split.  With ``--trainer`` the job goes to a fourth node started with
``--role trainer``; this script disconnects, reconnects by job id and
fetches the result, as a notebook that was closed meanwhile would.  TLS
and authentication are on (``examples/local_network.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.local_network import LocalNetwork  # noqa: E402

import node  # noqa: E402
from node.fl import FedAvg  # noqa: E402

OWNERS = ("clinic_1", "clinic_2", "clinic_3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--trainer", action="store_true", help="run the rounds on a trainer node")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bunch = load_digits()
    x, y = (bunch.data / 16.0).astype(np.float32), bunch.target
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[: int(len(x) * 0.8)], order[int(len(x) * 0.8):]
    with tempfile.TemporaryDirectory(prefix="tessera-digits-") as tmp:
        flags: dict[str, list[str]] = {}
        for name, rows in zip(OWNERS, np.array_split(train, len(OWNERS))):
            path = Path(tmp) / f"{name}.npz"
            np.savez(path, x=x[rows], y=y[rows])
            flags[name] = ["--dataset", f"digits={path}", "--tag", "#digits"]
        if args.trainer:
            flags["trainer"] = ["--role", "trainer"]
        with LocalNetwork(flags) as net:
            grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
            while len(datasets := grid.datasets("#digits")) < len(OWNERS):
                time.sleep(0.05)  # the owners are still registering
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
            job = FedAvg(model, datasets, rounds=args.rounds, batch_size=32, optimizer="sgd", lr=0.5,
                         loss="cross_entropy", min_participants=2)
            if args.trainer:
                trainer = grid.connect("trainer")
                job_id = trainer.fit(job).job_id
                trainer.close()
                print(f"job {job_id} submitted; disconnected, reconnecting...")
                trainer = grid.connect("trainer")
                history = trainer.job(job_id, job).wait()
                trainer.close()
            else:
                history = job.fit()
            grid.close()
    final = job.model.eval()
    with torch.no_grad():
        accuracy = float((final(torch.tensor(x[test])).argmax(1) == torch.tensor(y[test])).float().mean())
    epsilon, left = history.epsilon[-1], history.epsilon_remaining[-1]
    privacy = "no DP" if epsilon is None else f"epsilon {epsilon:.2f} spent per clinic ({left:.2f} of its budget left)"
    print(f"{len(history)} rounds; test accuracy {accuracy:.3f}; {privacy}; dropouts: {history.dropped or 'none'}")


if __name__ == "__main__":
    main()
