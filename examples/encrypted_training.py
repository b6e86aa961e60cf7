"""Logistic regression trained on secret-shared data: features, labels and model stay shared.

    python examples/encrypted_training.py              # 10 epochs, minibatches of 32
    python examples/encrypted_training.py --profile    # and where the time goes

Three node processes on loopback, TLS and authentication on (started like
``examples/local_network.py``): **alice** is a hospital and the first
computing party, **bob** the second computing party, **charlie** the crypto
provider (``--role crypto_provider``), which deals Beaver triples and never
sees an input.  The data flow is the one a deployment uses:

1. alice holds scikit-learn's breast-cancer training rows (standardised with
   the training split's mean and standard deviation, plus a column of ones
   so that the bias is the last weight).  In a deployment the hospital's
   own process uploads them to its node; here that upload is ``alice.send``.
2. ``ptr.share(alice, bob, crypto_provider=charlie)``: alice's node splits
   features and labels into two additive shares over Z/2^64 (16 fractional
   bits) and sends bob his share node to node.  This process then holds
   pointers only; the rows never leave alice in the clear.
3. The data scientist shares the initial weights (zeros) and trains with
   minibatch SGD, every minibatch taken by indexing the shared tensors with
   a public permutation.  The model stays shared through training and the
   encrypted inference that follows (:mod:`examples.encrypted_inference`);
   it is decrypted once, at the very end, to report its test accuracy.

The same :func:`sgd_step` code, with plain float64 tensors and the exact
sigmoid, trains the plaintext reference from the same initial weights on the
same minibatches; a third run uses the polynomial in plaintext, to separate
the approximation's effect from fixed-point rounding.

Sigmoid approximation
---------------------
Secret sharing offers +, - and products, so the sigmoid is replaced by the
odd degree-5 polynomial closest to it in least squares on [-10, 10]
(:class:`SigmoidPolynomial`; max error 0.083 there, mean 0.035).  Why this
one: the gradient is X^T (p(z) - y), and outside the interval an odd
polynomial behaves like its leading term.  Degree 5 has a positive leading
coefficient, so for a confident logit p(z) - y has the sign of z and pulls
the logit back: training stays bounded (the largest logit here stays below
16, against 27 with the exact sigmoid).  The least-squares cubics (on [-4, 4], [-6, 6] or [-8, 8]) and the
degree-7 fit on [-12, 12] have negative leading coefficients and diverge
on this data (checked in plaintext).  The 3-piece linear approximation
needs a secure comparison, which the shared-tensor API does not offer.

The polynomial is evaluated in u = z / 10 by Horner's rule in u^2, which
keeps coefficients of order one (1.68, -2.82, 1.72: exact to a relative
10^-5 with 16 fractional bits, where z^5's own coefficient, 1.7e-5, would
be about one ulp) and every intermediate value small.  That matters for the
local (SecureML) truncation used with two parties: it fails with
probability (|x| + 1) / 2^64 for a product x carrying 2f = 32 fractional
bits (``node/mpc/truncation.py``).  Here the largest products (X_b^T d,
below 10^3 in value) stay under 2^42, i.e. 2^-22 per element and about
10^-3 for a whole run; a failure would show as a wild weight.  The data
owner divides its design matrix by 10, so X w is u itself (no product by
1/10 and truncation per step), and labels are centred (y - 1/2, once).

One step is 5 Beaver products, each one peer-to-peer opening round:
u = X_b w, u^2, two Horner products, and the fused gradient X_b^T (p - y)
(weights and bias in one matmul); 10 lr / B is a public scalar product,
truncated locally.  Minibatches are slices of a per-epoch permutation of
the shared rows.  Everything is posted without waiting; the client
synchronises once, at the end of training.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import node  # noqa: E402
from examples.local_network import LocalNetwork  # noqa: E402
from node.client.mpc.shared import SharedTensor  # noqa: E402
from node.client.mpc.sharing import share_pointer  # noqa: E402

__all__ = [
    "Data", "SigmoidPolynomial", "Parties", "load_data", "epoch_orders", "slices", "exact_sigmoid", "sgd_step", "train_plain",
    "train_encrypted", "accuracy", "start_parties",
]

SEED = 0
BATCH_SIZE = 32
EPOCHS = 10
LEARNING_RATE = 0.1
FEATURE_SCALE = 10.0
"""Half-width of the polynomial's interval; the design matrix is divided by it."""
PARTY_FLAGS: dict[str, Sequence[str]] = {"alice": ["--role", "data_owner"], "bob": [], "charlie": ["--role", "crypto_provider"]}

T = TypeVar("T", torch.Tensor, SharedTensor)


@dataclass(frozen=True)
class Data:
    """Scaled design matrices and centred labels, float64.

    A design row is the standardised features and a 1 (the bias is the last
    weight), divided by :data:`FEATURE_SCALE`: then X w is directly the
    polynomial's variable u = z / 10, which saves the parties a product by a
    public scalar (and its truncation) per step.  Labels are y - 1/2, the
    activation's centred form.  Accuracies are unaffected (signs of X w).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def labels_test(self) -> torch.Tensor:
        """0/1 test labels."""
        return self.y_test + 0.5


def load_data(seed: int = SEED, subset: int | None = None) -> Data:
    """Breast cancer, stratified 80/20 split, standardised with the training split's statistics."""
    bunch = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.data, bunch.target, test_size=0.2, random_state=seed, stratify=bunch.target
    )
    if subset is not None:
        x_tr, y_tr = x_tr[:subset], y_tr[:subset]
    mean, std = x_tr.mean(0), x_tr.std(0)

    def design(x: np.ndarray) -> torch.Tensor:
        z = torch.tensor((x - mean) / std, dtype=torch.float64)
        return torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], dim=1) / FEATURE_SCALE

    def centred(y: np.ndarray) -> torch.Tensor:
        return torch.tensor(y, dtype=torch.float64).reshape(-1, 1) - 0.5

    return Data(design(x_tr), centred(y_tr), design(x_te), centred(y_te))


@dataclass(frozen=True)
class SigmoidPolynomial:
    """sigmoid(z) - 1/2 ~ u (a1 + u^2 (a3 + a5 u^2)) with u = z / half_width (odd, Horner)."""

    half_width: float
    odd: tuple[float, ...]
    """Coefficients of u, u^3, u^5, ... (at least two)."""

    @classmethod
    def fit(cls, half_width: float = FEATURE_SCALE, degree: int = 5, points: int = 4001) -> SigmoidPolynomial:
        """Least squares on ``points`` evenly spaced z in [-half_width, half_width], odd terms only.

        The sigmoid minus 1/2 is odd, so the even terms' best coefficients are 0.
        """
        u = torch.linspace(-1.0, 1.0, points, dtype=torch.float64)
        basis = torch.stack([u**k for k in range(1, degree + 1, 2)], dim=1)
        target = torch.sigmoid(u * half_width) - 0.5
        solution = torch.linalg.lstsq(basis, target.unsqueeze(1)).solution.squeeze(1)
        return cls(half_width, tuple(float(c) for c in solution))

    def __call__(self, u: T) -> T:
        """Horner in u^2: (degree + 1) / 2 products of two secrets for a shared u."""
        u2 = u * u
        acc = u2 * self.odd[-1] + self.odd[-2]  # public coefficient: local product
        for coefficient in reversed(self.odd[:-2]):
            acc = acc * u2 + coefficient
        return u * acc

    def errors(self, points: int = 4001) -> tuple[float, float]:
        """Largest and mean absolute error against the sigmoid on the interval."""
        u = torch.linspace(-1.0, 1.0, points, dtype=torch.float64)
        error = (self(u) + 0.5 - torch.sigmoid(u * self.half_width)).abs()
        return float(error.max()), float(error.mean())


def exact_sigmoid(u: torch.Tensor) -> torch.Tensor:
    """The plaintext reference activation in the same centred, scaled form: sigmoid(10 u) - 1/2."""
    return torch.sigmoid(u * FEATURE_SCALE) - 0.5


def epoch_orders(rows: int, epochs: int, batch_size: int = BATCH_SIZE, seed: int = SEED) -> list[torch.Tensor]:
    """One seeded permutation of the rows per epoch (minibatches are its consecutive slices)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(rows, generator=generator) for _ in range(epochs)]


def slices(rows: int, batch_size: int = BATCH_SIZE) -> list[slice]:
    """Consecutive minibatches of a permuted epoch, the last one shorter."""
    return [slice(start, start + batch_size) for start in range(0, rows, batch_size)]


def sgd_step(w: T, x: T, y: T, activation: Callable[[T], T], lr: float = LEARNING_RATE) -> T:
    """One SGD step on the mean logistic loss: w - lr / B * X^T (sigma(X w) - y).

    With the scaled design X' = X / 10 and centred labels y' = y - 1/2 this
    is w - (10 lr / B) X'^T (a(X' w) - y') where a(u) = sigma(10 u) - 1/2.
    Weights and bias get their gradient from one matmul (the bias is the
    weight of the ones column) and 10 lr / B is one public scalar: shared,
    2 + the activation's products of two secrets, one local truncation.
    """
    d = activation(x @ w) - y
    return w - (x.t() @ d) * (FEATURE_SCALE * lr / len(x))


def train_plain(
    data: Data, epochs: Sequence[torch.Tensor], activation: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The reference: float64, same initial weights (zeros), same minibatches."""
    w = torch.zeros(data.x_train.shape[1], 1, dtype=torch.float64)
    for order in epochs:
        x, y = data.x_train[order], data.y_train[order]
        for batch in slices(len(order)):
            w = sgd_step(w, x[batch], y[batch], activation)
    return w


def accuracy(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose logit has the sign of the centred label."""
    return float(((x @ w > 0) == (y > 0)).to(torch.float64).mean())


@dataclass(frozen=True)
class Parties:
    """Connected handles: the hospital (party 0), the second party and the crypto provider."""

    alice: node.RemoteNode
    bob: node.RemoteNode
    charlie: node.RemoteNode

    def share_from(self, owner: node.RemoteNode, value: torch.Tensor) -> SharedTensor:
        """``value`` uploaded to ``owner`` (its data owner's node), then split there."""
        pointer = owner.send(value)
        # ``Pointer.share`` is typed ``Any``; ``share_pointer`` is the same call, typed.
        return share_pointer(pointer, self.alice, self.bob, crypto_provider=self.charlie)

    def share(self, value: torch.Tensor) -> SharedTensor:
        """Shared from this process (the data scientist's own values, e.g. initial weights)."""
        return node.share(value, self.alice, self.bob, crypto_provider=self.charlie)

    def close(self) -> None:
        for handle in (self.alice, self.bob, self.charlie):
            handle.close()


def start_parties(net: LocalNetwork, timeout: float = 30.0) -> Parties:
    """Connect to the three nodes through the gateway, once they have registered."""
    grid = node.Gateway(net.gateway_url, cafile=net.gateway_cafile)
    try:
        deadline = time.monotonic() + timeout
        while {n.id for n in grid.nodes() if n.online} < set(PARTY_FLAGS):
            if time.monotonic() > deadline:
                raise SystemExit("the nodes did not register at the gateway")
            time.sleep(0.05)
        return Parties(grid.connect("alice"), grid.connect("bob"), grid.connect("charlie"))
    finally:
        grid.close()


@dataclass(frozen=True)
class EncryptedRun:
    """The still-shared model and where the wall time went (seconds)."""

    weights: SharedTensor
    share_seconds: float
    post_seconds: float
    train_seconds: float
    """From the first post of step 1 until every party finished the last step."""


def train_encrypted(
    parties: Parties, data: Data, epochs: Sequence[torch.Tensor], activation: SigmoidPolynomial
) -> EncryptedRun:
    """Share the data from alice, train on shares, and leave the model shared."""
    start = time.perf_counter()
    x = parties.share_from(parties.alice, data.x_train)
    y = parties.share_from(parties.alice, data.y_train)
    w = parties.share(torch.zeros(data.x_train.shape[1], 1, dtype=torch.float64))
    w.sync()
    shared = time.perf_counter()
    for order in epochs:
        x_epoch, y_epoch = x[order], y[order]  # one advanced index per epoch, then slices
        for batch in slices(len(order)):
            w = sgd_step(w, x_epoch[batch], y_epoch[batch], activation)
    posted = time.perf_counter()
    w.sync()
    done = time.perf_counter()
    return EncryptedRun(w, shared - start, posted - shared, done - shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--profile", action="store_true", help="measure where the training time goes")
    args = parser.parse_args()
    from examples.encrypted_inference import infer_encrypted, report_inference
    from examples.encrypted_profile import profile_training

    torch.set_num_threads(1)
    data = load_data()
    poly = SigmoidPolynomial.fit()
    worst, mean = poly.errors()
    print(f"sigmoid ~ odd degree-5 least-squares polynomial on [-{poly.half_width:g}, {poly.half_width:g}]: "
          f"max error {worst:.4f}, mean {mean:.4f}")
    epochs = epoch_orders(len(data.x_train), args.epochs)
    steps = len(epochs) * len(slices(len(data.x_train)))
    print(f"{len(data.x_train)} training rows, {len(data.x_test)} test rows, {steps} steps "
          f"({args.epochs} epochs of minibatches of {BATCH_SIZE})")
    exact = train_plain(data, epochs, exact_sigmoid)
    approx = train_plain(data, epochs, poly)
    with LocalNetwork(PARTY_FLAGS) as net:
        print(f"alice, bob, charlie and a gateway up in {net.up_at - net.started_at:.1f} s")
        parties = start_parties(net)
        try:
            run = train_encrypted(parties, data, epochs, poly)
            inference = infer_encrypted(parties, run.weights, data)
            model = run.weights.get()  # the one decryption of the model
            if args.profile:
                profile_training(parties, data, epochs[0], poly)
        finally:
            parties.close()
    report(data, exact, approx, model, run, steps)
    report_inference(inference, model, data)


def report(data: Data, exact: torch.Tensor, approx: torch.Tensor, model: torch.Tensor, run: EncryptedRun,
           steps: int) -> None:
    rows = [("plaintext, exact sigmoid", exact), ("plaintext, polynomial", approx),
            ("encrypted (SPDZ), polynomial", model)]
    print(f"\n{'model':32s} {'test accuracy':>13s} {'train accuracy':>14s}")
    for label, w in rows:
        print(f"{label:32s} {accuracy(w, data.x_test, data.y_test):13.4f} "
              f"{accuracy(w, data.x_train, data.y_train):14.4f}")
    gap = abs(accuracy(model, data.x_test, data.y_test) - accuracy(exact, data.x_test, data.y_test))
    print(f"encrypted vs plaintext: {100 * gap:.2f} points apart (bound: 2); "
          f"largest weight difference from the plaintext polynomial run {float((model - approx).abs().max()):.2e}")
    print(f"encrypted training: {run.train_seconds:.2f} s for {steps} steps ({steps / run.train_seconds:.1f} "
          f"steps/s; client posting {run.post_seconds:.2f} s), after sharing the data in {run.share_seconds:.2f} s")


if __name__ == "__main__":
    main()
