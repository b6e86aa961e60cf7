"""Where the encrypted training's time goes (``encrypted_training.py --profile``).

Runs on the nodes the example already started, on shares of the same data,
and prints one table:

- **pipelined, fused** is the example's step (everything posted, one sync
  at the end); **synced each step** waits for every party after each step,
  so a step costs its full latency chain; **naive** is the textbook step
  (bias apart, z + b, the polynomial from explicit powers u, u^3, u^5, the
  weight gradient as a sum of an elementwise product), pipelined too.
- requests the client posts per step to each node (the crypto provider
  receives one ``mpc_deal`` per product of two secrets: those are the
  peer-to-peer opening rounds), client time to post one step, and steps/s.
- the round trip of one synchronised Beaver product on a minibatch-sized
  tensor, next to that of a bare ``sync``: the latency a step pays per
  dependent round when nothing overlaps.

Request counts read the client channel's request-id counter, a private
field: the client has no public per-connection counters.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch

from examples.encrypted_training import (
    BATCH_SIZE, FEATURE_SCALE, LEARNING_RATE, Data, Parties, SigmoidPolynomial, sgd_step, slices,
)
from node.client.mpc.shared import SharedTensor

__all__ = ["profile_training", "naive_step"]



def _requests(parties: Parties) -> list[int]:
    return [handle.requests_sent for handle in (parties.alice, parties.bob, parties.charlie)]


def naive_step(poly: SigmoidPolynomial) -> Callable[[SharedTensor, SharedTensor, SharedTensor, SharedTensor],
                                                    tuple[SharedTensor, SharedTensor]]:
    """The same update, unfused: bias apart, z rescaled, explicit powers, gradient as sum(x * d)."""
    a1, a3, a5 = poly.odd
    scale = FEATURE_SCALE

    def step(v: SharedTensor, b: SharedTensor, x: SharedTensor, y: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
        features = x[:, :-1] * scale  # the textbook data: standardised, unscaled
        u = (features @ v + b) * (1.0 / scale)
        u2 = u * u
        u3 = u2 * u
        u5 = u3 * u2
        d = u * a1 + u3 * a3 + u5 * a5 + 0.5 - (y + 0.5)
        rate = LEARNING_RATE / len(x)
        return v - (features * d).sum(0).reshape(-1, 1) * rate, b - d.sum() * rate

    return step


def _run(parties: Parties, batches: Sequence[slice], body: Callable[[slice], SharedTensor],
         sync_each: bool) -> tuple[float, float, list[int]]:
    """Seconds posting, seconds until done, requests per node; ``body`` posts one step."""
    before = _requests(parties)
    start = time.perf_counter()
    posting = 0.0
    last = None
    for batch in batches:
        tick = time.perf_counter()
        last = body(batch)
        posting += time.perf_counter() - tick
        if sync_each:
            last.sync()
    assert last is not None
    last.sync()
    total = time.perf_counter() - start
    after = _requests(parties)
    return posting, total, [a - b - 1 - len(batches) * sync_each for a, b in zip(after, before)]


def _latency(parties: Parties, what: Callable[[], None], repeats: int = 20) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        what()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def profile_training(parties: Parties, data: Data, order: torch.Tensor, poly: SigmoidPolynomial) -> None:
    """Print the profile table: one epoch (rows in ``order``) per variant, on fresh shares."""
    x = parties.share_from(parties.alice, data.x_train)[order]
    y = parties.share_from(parties.alice, data.y_train)[order]
    steps = slices(len(order))
    features = data.x_train.shape[1] - 1
    state: dict[str, SharedTensor] = {"w": parties.share(torch.zeros(features + 1, 1, dtype=torch.float64)),
                                      "v": parties.share(torch.zeros(features, 1, dtype=torch.float64)),
                                      "b": parties.share(torch.zeros((), dtype=torch.float64))}
    state["w"].sync()
    naive = naive_step(poly)

    def fused(batch: slice) -> SharedTensor:
        state["w"] = sgd_step(state["w"], x[batch], y[batch], poly)
        return state["w"]

    def unfused(batch: slice) -> SharedTensor:
        state["v"], state["b"] = naive(state["v"], state["b"], x[batch], y[batch])
        return state["b"]

    print(f"\nprofile over {len(steps)} steps (one epoch):")
    print(f"{'variant':24s} {'steps/s':>8s} {'ms/step':>8s} {'client ms/step':>15s} "
          f"{'requests/step alice, bob, charlie':>34s}")
    for label, body, sync_each in (("pipelined, fused", fused, False), ("synced each step", fused, True),
                                   ("naive, pipelined", unfused, False)):
        posting, total, counts = _run(parties, steps, body, sync_each)
        per_step = ", ".join(f"{c / len(steps):.1f}" for c in counts)
        print(f"{label:24s} {len(steps) / total:8.1f} {1000 * total / len(steps):8.2f} "
              f"{1000 * posting / len(steps):15.2f} {per_step:>34s}")
    a = parties.share(torch.randn(BATCH_SIZE, 1, dtype=torch.float64))
    beaver = _latency(parties, lambda: (a * a).sync())
    bare = _latency(parties, lambda: a.sync())
    print(f"one synchronised Beaver product on {BATCH_SIZE} elements: {1000 * beaver:.2f} ms "
          f"(a bare sync of the three nodes: {1000 * bare:.2f} ms)")
