"""A live node fed a few hundred random and mutated frames keeps answering, computing and its objects.

The fast slice of the node fuzzing (``benchmarks.fuzz`` is the long run).
Inputs are seeded, so every run sends the same frames.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Iterator

import pytest
import torch

import node
from tests.fuzz.corpus import field_names, random_input, seed_frames
from tests.fuzz.wire import FeedReport, Target, feed, handshake
from tests.support import NodeProcess, start_node

SEED = 20_240_605
INPUTS = 400


def _fuzz_inputs(proc: NodeProcess, count: int, seed: int) -> list[bytes]:
    """Every seed once (so the seed objects exist), then ``count`` seeded random inputs."""
    certificate = ssl.PEM_cert_to_DER_cert(proc.cafile.read_text())
    seeds = seed_frames(node_id=proc.node_id, url=proc.url, fingerprint=proc.fingerprint, certificate=certificate)
    rng = random.Random(seed)
    names = field_names()
    return seeds + [random_input(rng, seeds, names, proc.node_id) for _ in range(count)]


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node process for the module, stopped (cleanly) at the end."""
    proc = start_node(tmp_path_factory.mktemp("fuzz"), "fuzz", "--log-level", "warning")
    yield proc
    assert proc.stop() == 0, proc.stderr()


def _assert_clean(report: FeedReport, proc: NodeProcess) -> None:
    assert not report.hangs, f"no sync_reply within the timeout after: {report.hangs[0]!r}"
    assert not report.internal, f"INTERNAL error for a frame of: {report.internal[0]!r}"
    assert not report.bad_replies, f"undecodable reply: {report.bad_replies[0]!r}"
    assert not report.unexpected_closes, f"connection closed after: {report.unexpected_closes[0]!r}"
    assert proc.process.poll() is None, proc.stderr()
    assert "Traceback" not in proc.stderr(), proc.stderr()


def test_fuzzed_frames_leave_the_node_healthy(fuzz_node: NodeProcess) -> None:
    """Random and mutated frames get typed answers; afterwards the node computes and keeps objects."""
    client = node.connect(fuzz_node.url, cafile=fuzz_node.cafile)
    try:
        kept = client.send(torch.arange(6.0))
        client.sync()
        frames = _fuzz_inputs(fuzz_node, INPUTS, SEED)
        report = asyncio.run(feed(Target(fuzz_node.url, fuzz_node.cafile), frames, batch=20))
        _assert_clean(report, fuzz_node)
        assert report.frames == len(frames) and report.handshakes > 0 and report.codes["BAD_MESSAGE"] > 0
        x, y = client.send(torch.tensor([1.0, 2.0])), client.send(torch.tensor([3.0, 4.0]))
        assert torch.equal((x + y).get(), torch.tensor([4.0, 6.0]))
        assert torch.equal(kept.get(), torch.arange(6.0)), "an object stored before the fuzzing was lost"
    finally:
        client.close()
    assert fuzz_node.process.poll() is None


def test_fuzzed_first_frames(fuzz_node: NodeProcess) -> None:
    """Random frames as the first frame of fresh connections are answered or closed, never hang."""
    rng = random.Random(SEED + 1)
    frames = _fuzz_inputs(fuzz_node, 40, SEED + 2)
    target = Target(fuzz_node.url, fuzz_node.cafile)

    async def run() -> FeedReport:
        report = FeedReport()
        for frame in rng.sample(frames, 40):
            await handshake(target, frame, report)
        return report

    report = asyncio.run(run())
    _assert_clean(report, fuzz_node)
    assert report.codes["UNAUTHENTICATED"] > 0
    client = node.connect(fuzz_node.url, cafile=fuzz_node.cafile)
    try:
        assert client.send(torch.ones(3)).sum().get().item() == 3.0
    finally:
        client.close()
