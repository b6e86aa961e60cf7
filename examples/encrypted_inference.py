"""Encrypted inference of a linear model: shared inputs, shared or public weights.

    python examples/encrypted_inference.py

Used as the second phase of ``examples/encrypted_training.py`` (the trained
model, still shared, scores the test rows), and runnable on its own: then
the model is trained in plaintext by the data scientist, who either shares
its weights (a Beaver matmul, the model stays secret from the parties) or
publishes them (each party multiplies its share locally, no round).

The test rows belong to a second data owner, bob's clinic: uploaded to bob's
node and split there (``ptr.share``), so they never reach alice or this
process in the clear.  Only the logits are decrypted, by this process
(``.get()`` fetches both shares); predictions are their signs.  The
logits are those of the scaled design (z / 10, see ``encrypted_training``).  Both are
compared with the same weights applied in plaintext.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.encrypted_training import (  # noqa: E402
    PARTY_FLAGS,
    Data,
    Parties,
    accuracy,
    load_data,
    epoch_orders,
    exact_sigmoid,
    start_parties,
    train_plain,
)
from examples.local_network import LocalNetwork  # noqa: E402
from node.client.mpc.shared import SharedTensor  # noqa: E402

__all__ = ["Inference", "infer_encrypted", "report_inference"]


@dataclass(frozen=True)
class Inference:
    """Decrypted logits of the shared test rows, and the time from sharing to decryption."""

    logits: torch.Tensor
    seconds: float
    weights: str
    """"shared" or "public"."""


def infer_encrypted(parties: Parties, weights: SharedTensor | torch.Tensor, data: Data) -> Inference:
    """Share the test rows from bob's node, compute X w on shares, decrypt only the logits here."""
    start = time.perf_counter()
    x = parties.share_from(parties.bob, data.x_test)
    logits = x @ weights  # shared weights: one Beaver matmul; public: local products
    decrypted = logits.get()
    kind = "shared" if isinstance(weights, SharedTensor) else "public"
    return Inference(decrypted, time.perf_counter() - start, kind)


def report_inference(result: Inference, weights: torch.Tensor, data: Data) -> None:
    """Compare decrypted logits and predictions with the plaintext model on the same rows."""
    plain = data.x_test @ weights
    agree = float(((result.logits > 0) == (plain > 0)).to(torch.float64).mean())
    encrypted_accuracy = float(((result.logits > 0) == (data.y_test > 0)).to(torch.float64).mean())
    print(f"encrypted inference ({result.weights} weights) of {len(plain)} shared rows in {result.seconds:.2f} s: "
          f"test accuracy {encrypted_accuracy:.4f} (plaintext {accuracy(weights, data.x_test, data.y_test):.4f}), "
          f"predictions agree on {100 * agree:.1f} %, largest logit error "
          f"{float((result.logits - plain).abs().max()):.2e}")


def main() -> None:
    torch.set_num_threads(1)
    data = load_data()
    model = train_plain(data, epoch_orders(len(data.x_train), 10), exact_sigmoid)
    with LocalNetwork(PARTY_FLAGS) as net:
        parties = start_parties(net)
        try:
            shared = infer_encrypted(parties, parties.share(model), data)
            public = infer_encrypted(parties, model, data)
        finally:
            parties.close()
    report_inference(shared, model, data)
    report_inference(public, model, data)


if __name__ == "__main__":
    main()
