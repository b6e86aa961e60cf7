"""Fuzzing the decoder and a live node with random, structured and mutated inputs (the long run).

    python -m benchmarks.fuzz [--inputs 100000] [--seed N] [--connections 4] [--json PATH]

Every input goes to ``protocol.codec.decode_message`` in this process (it
must return a message that round-trips, or raise ``RemoteProtocolError``) and to a
live node over raw TLS WebSockets, in batches each followed by a ``sync``
that must be answered within 10 s.  Reports inputs tried, decoder crashes
(first reproducers saved to ``artifacts/fuzz-crashes/``), hangs, INTERNAL
answers, the node's RSS before and after, and a final check through the
real client.  Exits non-zero on any crash, hang or failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from benchmarks.memory import rss
from protocol.errors import RemoteProtocolError
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from tests.fuzz.corpus import field_names, random_input, seed_frames
from tests.fuzz.oracle import Unreportable, check_decoder, check_reportable
from tests.fuzz.wire import FeedReport, Target, cleanup, feed, isolate
from node.server.users import UserDirectory
from peer.security.tokens import parse_user_token
from tests.support import USER_TOKEN, admit, node_env

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"^node (\S+) listening on (\S+) fingerprint (\S+)")
CHUNK = 5_000
SAVED_PER_KIND = 5
HANG_SECONDS = 1.0


class DecoderHang(BaseException):
    """Raised by the alarm when one decode takes far too long (BaseException: not swallowed)."""


class Findings:
    """Decoder findings by kind, with the first few reproducers written to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counts: collections.Counter[str] = collections.Counter()
        self.saved: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)
        for old in list(directory.glob("*.bin")) + list(directory.glob("*.txt")):
            old.unlink()

    def add(self, kind: str, data: bytes | list[bytes], note: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] > SAVED_PER_KIND:
            return
        frames = data if isinstance(data, list) else [data]
        for i, frame in enumerate(frames):
            path = self.directory / f"{kind}-{self.counts[kind]}-{i}.bin"
            path.write_bytes(frame)
            self.saved.append(str(path.relative_to(ROOT)))
        (self.directory / f"{kind}-{self.counts[kind]}.txt").write_text(note)


def _on_alarm(signum: int, frame: Any) -> None:
    raise DecoderHang()


def fuzz_decoder(inputs: list[bytes], rng: random.Random, findings: Findings) -> collections.Counter[str]:
    """Decode every input in-process; count outcomes, record crashes, hangs and unreportable errors."""
    outcomes: collections.Counter[str] = collections.Counter()
    for data in inputs:
        max_bytes = rng.choice([DEFAULT_MAX_MESSAGE_BYTES] * 8 + [4096, 64])
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, 10.0)
        try:
            result = check_decoder(data, max_bytes)
            outcomes["error" if isinstance(result, RemoteProtocolError) else "message"] += 1
            if isinstance(result, RemoteProtocolError):
                check_reportable(result)
        except DecoderHang:
            findings.add("decoder-hang", data, f"max_bytes={max_bytes}: no answer within 10 s")
        except Unreportable as exc:
            findings.add("unreportable-error", data, f"max_bytes={max_bytes}\n{exc}")
        except Exception:
            findings.add("decoder-crash", data, f"max_bytes={max_bytes}\n{traceback.format_exc()}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - started
        if elapsed > HANG_SECONDS:
            findings.add("decoder-hang", data, f"max_bytes={max_bytes}: took {elapsed:.2f} s")
    return outcomes


async def fuzz_node(target: Target, inputs: list[bytes], connections: int) -> FeedReport:
    """Feed the inputs round-robin over ``connections`` concurrent connections."""
    reports = await asyncio.gather(*(feed(target, inputs[i::connections]) for i in range(connections)))
    total = FeedReport()
    for report in reports:
        total.merge(report)
    return total


async def record_node(target: Target, report: FeedReport, findings: Findings) -> None:
    """Save node findings, narrowing each failing batch to the single frame that fails alone."""
    for kind, batches in (("node-hang", report.hangs), ("node-internal", report.internal),
                          ("node-close", report.unexpected_closes)):
        for batch in batches:
            culprits = await isolate(target, batch) if findings.counts[kind] < SAVED_PER_KIND else []
            findings.add(kind, culprits or batch, f"{len(batch)} frames; failing alone: {len(culprits)}")
    for reply in report.bad_replies:
        findings.add("node-bad-reply", reply, "the node sent a frame the client cannot decode")
    for batch in report.unreportable:
        findings.add("node-unreportable-error", batch, "BAD_MESSAGE: the real error reply could not be encoded")


def final_check(remote: Any, kept: Any, url: str, fingerprint: str) -> list[str]:
    """Through the real client: stored object intact, arithmetic right, a new connection works."""
    import node

    problems = []
    if not torch.equal(kept.get(), torch.arange(6.0)):
        problems.append("the object stored before fuzzing changed")
    x, y = remote.send(torch.tensor([1.0, 2.0])), remote.send(torch.tensor([3.0, 4.0]))
    if not torch.equal((x + y).get(), torch.tensor([4.0, 6.0])):
        problems.append("(x + y).get() is wrong")
    fresh = node.connect(url, fingerprint=fingerprint)
    try:
        if fresh.send(torch.ones(4)).sum().get().item() != 4.0:
            problems.append("a new client computes wrongly")
    finally:
        fresh.close()
    return problems


def main() -> int:
    import node

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "fuzz.json")
    args = parser.parse_args()
    findings = Findings(ROOT / "artifacts" / "fuzz-crashes")
    signal.signal(signal.SIGALRM, _on_alarm)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        UserDirectory(Path(tmp)).add(parse_user_token(USER_TOKEN))  # the health checker
        fuzzer = admit(Path(tmp), "fuzzer")  # a principal of its own: its deletes must miss the kept object
        stderr_path = Path(tmp) / "node.stderr"
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "node", "--id", "fuzz", "--port", "0", "--state-dir", tmp,
                 "--log-level", "warning"],
                stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=node_env(Path(tmp) / "home"),
            )
        try:
            assert process.stdout is not None
            match = LISTENING.match(process.stdout.readline())
            assert match, f"the node did not start: {stderr_path.read_text()}"
            node_id, url, fingerprint = match.groups()
            target = Target(url, Path(tmp) / "cert.pem", fuzzer)
            certificate = ssl.PEM_cert_to_DER_cert(target.cafile.read_text())
            remote = node.connect(url, fingerprint=fingerprint)
            kept = remote.send(torch.arange(6.0))
            remote.sync()
            rss_start = rss_warm = rss(process.pid)
            rng, side_rng, names = random.Random(args.seed), random.Random(args.seed + 1), field_names()
            outcomes: collections.Counter[str] = collections.Counter()
            report = FeedReport()
            decoder_seconds = node_seconds = 0.0
            trajectory: list[float] = []
            for start in range(0, args.inputs, CHUNK):
                seeds = seed_frames(node_id=node_id, url=url, fingerprint=fingerprint, certificate=certificate)
                inputs = [random_input(rng, seeds, names, node_id) for _ in range(min(CHUNK, args.inputs - start))]
                if start == 0:
                    inputs = seeds + inputs[len(seeds):]
                t0 = time.perf_counter()
                outcomes.update(fuzz_decoder(inputs, side_rng, findings))
                t1 = time.perf_counter()
                chunk_report = asyncio.run(fuzz_node(target, inputs, args.connections))
                node_seconds += time.perf_counter() - t1
                decoder_seconds += t1 - t0
                asyncio.run(record_node(target, chunk_report, findings))
                report.merge(chunk_report)
                alive = process.poll() is None
                if alive:
                    trajectory.append(rss(process.pid) / 1e6)
                if start == 0:
                    rss_warm = rss(process.pid)
                print(f"{start + len(inputs):>7} inputs  decoder {dict(outcomes)}  node frames {report.frames} "
                      f"findings {dict(findings.counts)}  rss {rss(process.pid) / 1e6:.0f} MB", flush=True)
                if not alive:
                    break
            node_alive = process.poll() is None
            removed = asyncio.run(cleanup(target)) if node_alive else 0
            time.sleep(0.5)
            rss_end = rss(process.pid) if node_alive else 0
            problems = final_check(remote, kept, url, fingerprint) if node_alive else ["the node died"]
            remote.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        tracebacks = stderr_path.read_text().count("Traceback")
    duration = time.perf_counter() - began
    crashes = findings.counts["decoder-crash"]
    hangs = findings.counts["decoder-hang"] + findings.counts["node-hang"]
    result = {
        "inputs": args.inputs, "seed": args.seed, "connections": args.connections, "seconds": duration,
        "decoder_seconds": decoder_seconds, "node_seconds": node_seconds,
        "decoder_outcomes": dict(outcomes), "crashes": crashes, "hangs": hangs,
        "findings": dict(findings.counts), "reproducers": findings.saved,
        "node": {"frames": report.frames, "replies": report.replies, "batches": report.batches,
                 "handshakes": report.handshakes, "reconnects": report.reconnects,
                 "codes": dict(report.codes.most_common()), "closes": dict(report.closes),
                 "internal_errors": len(report.internal), "tracebacks_logged": tracebacks,
                 "alive": node_alive, "objects_cleaned_up": removed},
        "node_rss_mb": {"start": rss_start / 1e6, "after_first_chunk": rss_warm / 1e6, "end": rss_end / 1e6,
                        f"every_{CHUNK}_inputs": trajectory},
        "final_check": problems or "ok",
    }
    print(f"{args.inputs} inputs in {duration:.0f}s (decoder {decoder_seconds:.0f}s, node {node_seconds:.0f}s); "
          f"crashes {crashes}, hangs {hangs}, node INTERNAL {len(report.internal)}, other findings "
          f"{ {k: v for k, v in findings.counts.items() if k not in ('decoder-crash', 'decoder-hang', 'node-hang')} }; "
          f"node RSS {rss_start / 1e6:.0f} MB -> {rss_warm / 1e6:.0f} MB (after {CHUNK}) -> {rss_end / 1e6:.0f} MB; "
          f"final check {result['final_check']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    failed = crashes or hangs or report.internal or report.bad_replies or report.unexpected_closes
    return 1 if failed or problems or not node_alive else 0


if __name__ == "__main__":
    sys.exit(main())
