"""What the SPDZ benchmark modules share: waiting for the parties, medians, the plaintext baseline."""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from typing import Any, Callable

import node
from protocol.messages import SyncReply, SyncRequest

__all__ = ["sync_all", "median_ms", "plain_ms", "time_op"]


def sync_all(handles: list[node.RemoteNode]) -> None:
    """Wait for every handle's node to finish what was sent, in parallel."""
    futures = [h.call_async(SyncRequest) for h in handles]
    concurrent.futures.wait(futures)
    for h, future in zip(handles, futures):
        h.settle(future.result(), SyncReply, "sync")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def plain_ms(op: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of the plaintext baseline ``op()`` (at least 5 runs)."""
    samples = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter()
        op()
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


def time_op(op: Callable[[], Any], sync: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median and best milliseconds of ``op(); sync()``, after two warm-up runs."""
    for _ in range(2):
        op()
        sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        op()
        sync()
        samples.append(time.perf_counter() - start)
    return median_ms(samples), min(samples) * 1e3
