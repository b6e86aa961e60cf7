"""PySyft 0.2's "Intro to Federated Learning" tutorial, on two TLS nodes.

    python examples/remote_training.py            # 10 iterations
    python examples/remote_training.py --quick    # 2 iterations (the tests run this)

Starts a throwaway network (a gateway and the nodes bob and alice, TLS and
tokens on: :mod:`examples.local_network`), sends half of a toy dataset to
each node, and trains ``nn.Linear(2, 1)`` on both, alternating: the model
goes to the node holding the batch, the forward and ``loss.backward()`` run
there, ``opt.step()`` updates the parameters there, and ``model.get()``
brings them back.  Only commands, the parameters and the loss travel; the
data stays on its node.  The loss is printed per iteration.

Then the same model is trained on bob's *own* dataset (loaded by bob's
operator with ``--dataset``, private: anyone may compute on it, nobody may
read it): the trained parameters carry that data's restriction, and
``model.get()`` is refused with ``PermissionDenied``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.local_network import LocalNetwork  # noqa: E402

import node  # noqa: E402
from protocol.federated import dataset_object_ids  # noqa: E402


def wait_for_nodes(grid: node.Gateway, wanted: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not wanted <= {n.id for n in grid.nodes() if n.online}:
        if time.monotonic() > deadline:
            raise SystemExit(f"remote_training: nodes {sorted(wanted)} did not register in {timeout:.0f}s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 iterations instead of 10")
    args = parser.parse_args(argv)
    iterations = 2 if args.quick else 10
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tessera-remote-training-") as tmp:
        private = Path(tmp) / "bob_private.npz"
        np.savez(private, x=np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), y=np.array([1.0, 0.0], np.float32))
        with LocalNetwork({"bob": ["--dataset", f"bob_private={private}"], "alice": []}) as net:
            grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
            wait_for_nodes(grid, {"bob", "alice"})
            bob, alice = grid.connect("bob"), grid.connect("alice")
            try:
                train(bob, alice, iterations)
                refused(bob)
            finally:
                bob.close()
                alice.close()
                grid.close()
    return 0


def train(bob: node.RemoteNode, alice: node.RemoteNode, iterations: int) -> None:
    """The tutorial, line for line (PySyft's ``data.location`` is ``data.node`` here)."""
    node.hook_torch()  # adds Tensor.send and nn.Module.send/get/move
    data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    target = torch.tensor([[0], [0], [1], [1.0]])
    data_bob, target_bob = data[0:2].send(bob), target[0:2].send(bob)
    data_alice, target_alice = data[2:].send(alice), target[2:].send(alice)
    datasets = [(data_bob, target_bob), (data_alice, target_alice)]
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = node.optim.SGD(model.parameters(), lr=0.1)
    for iteration in range(iterations):
        total = 0.0
        for batch, labels in datasets:
            model.send(batch.node)
            opt.zero_grad()
            pred = model(batch)
            loss = ((pred - labels) ** 2).sum()
            loss.backward()
            opt.step()
            model.get()
            total += loss.get().item()
        print(f"iteration {iteration} loss {total:.6f}", flush=True)
    print(f"weights {model.weight.data.tolist()} bias {model.bias.data.tolist()}")


def refused(bob: node.RemoteNode) -> None:
    """Training on bob's private dataset works; bringing the result back does not."""
    x_id, y_id = dataset_object_ids("bob_private")
    x, y = bob.pointer(x_id), bob.pointer(y_id)
    model = nn.Linear(2, 1).send(bob)
    opt = node.optim.SGD(model.parameters(), lr=0.1)
    loss = ((model(x) - y.view(-1, 1)) ** 2).sum()
    loss.backward()
    opt.step()
    try:
        model.get()
    except node.PermissionDenied as exc:
        print(f"model.get() after training on bob's private dataset: refused ({exc})")
    else:
        raise SystemExit("remote_training: a model trained on private data came back")


if __name__ == "__main__":
    sys.exit(main())
