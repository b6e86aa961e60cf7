"""Tessera's transport against raw WebSockets on the same TLS, in one run.

    python -m benchmarks.transport            # full: bulk up to 1 GiB (a few minutes)
    python -m benchmarks.transport --quick    # under a minute

Two nodes and the baseline servers (:mod:`benchmarks.raw_servers`) run as
separate processes on loopback; the clients run here.  Every figure is
printed next to its baseline from the same run, with the ratio and the
target, and everything is written as JSON.  Nothing here is asserted: the
numbers are for people, and the closing notes of issue 4 discuss them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.memory import peak_rss, reset_peak_rss, rss
from benchmarks.raw_clients import RawTls, RawWebSocket
from peer.transport import loops

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"^(\S+) .*listening on (\S+) fingerprint (\S+)")
MIB = 1 << 20
BLOCKS = 10
"""Round trips are measured in this many interleaved blocks of each side."""
REPEATS = 5
"""Throughput figures are the median of this many interleaved runs."""


def spawn(args: list[str], lines: int = 1) -> tuple[subprocess.Popen[str], list[re.Match[str]]]:
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None
    matches = []
    for _ in range(lines):
        match = LISTENING.match(process.stdout.readline())
        if match is None:
            process.kill()
            raise RuntimeError(f"could not start {' '.join(args)}")
        matches.append(match)
    return process, matches


def latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


def timed(repeat: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class Bench:
    """The processes and clients of one run."""

    def __init__(self, tmp: str) -> None:
        import node

        from benchmarks.credentials import admit_benchmark_user

        self.node_args = ["--port", "0", "--log-level", "warning"]
        admit_benchmark_user(f"{tmp}/a", f"{tmp}/b")
        self.alice_proc, (alice,) = spawn(["-m", "node", "--id", "alice", "--state-dir", f"{tmp}/a", *self.node_args])
        self.bob_proc, (bob,) = spawn(["-m", "node", "--id", "bob", "--state-dir", f"{tmp}/b", *self.node_args])
        self.raw_proc, (ws, tls) = spawn(["-m", "benchmarks.raw_servers", f"{tmp}/raw"], lines=2)
        self.alice = node.connect(alice.group(2), fingerprint=alice.group(3))
        self.bob = node.connect(bob.group(2), fingerprint=bob.group(3))
        self.echo = RawWebSocket(ws.group(2), ws.group(3), "/echo")
        self.bulk = RawWebSocket(ws.group(2), ws.group(3), "/bulk")
        host, port = tls.group(2).removeprefix("tls://").rsplit(":", 1)
        self.tls = RawTls(host, int(port), tls.group(3))

    def close(self) -> None:
        for client in (self.alice, self.bob, self.echo, self.bulk, self.tls):
            client.close()
        for process in (self.alice_proc, self.bob_proc, self.raw_proc):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def round_trip(bench: Bench, repeat: int) -> dict[str, Any]:
    from protocol.codec import encode_message
    from protocol.messages import GetRequest

    x, y = bench.alice.send(torch.arange(10.0)), bench.alice.send(torch.ones(10))
    bench.alice.sync()
    small = b"\0" * encode_message(GetRequest(1, 2**63, False, 2**24)).nbytes
    for _ in range(100):
        (x + y).get()
        bench.echo.echo(small)
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    for _ in range(BLOCKS):  # interleaved, so drift on a shared machine hits both alike
        ours_samples += timed(repeat // BLOCKS, lambda: (x + y).get())
        raw_samples += timed(repeat // BLOCKS, lambda: bench.echo.echo(small))
    ours, base = latency(ours_samples), latency(raw_samples)
    return {"tessera": ours, "raw_echo": base, "ratio": ours["median_us"] / base["median_us"],
            "target": "<= 1.5", "in_process": in_process_round_trip(repeat)}


def in_process_round_trip(repeat: int) -> dict[str, float]:
    """The same round trip on a VirtualNode: all of Tessera's work, no socket, no thread."""
    import node

    virtual = node.VirtualNode("virtual")
    x, y = virtual.send(torch.arange(10.0)), virtual.send(torch.ones(10))
    for _ in range(100):
        (x + y).get()
    return latency(timed(repeat, lambda: (x + y).get()))


def pipelined(bench: Bench, count: int) -> dict[str, Any]:
    from protocol.codec import encode_message
    from protocol.messages import CommandRequest
    from protocol.values import PointerRef

    x, y = bench.alice.send(torch.arange(10.0)), bench.alice.send(torch.ones(10))
    bench.alice.sync()
    command = CommandRequest(1, "add", PointerRef("alice", 1), (PointerRef("alice", 2),), {}, (3,))
    small = b"\0" * encode_message(command).nbytes

    def ours() -> None:
        for _ in range(count):
            x + y
        bench.alice.sync()

    ours_s, raw_s = [], []
    for _ in range(REPEATS):  # interleaved; the median of each side is reported
        ours_s.append(seconds(ours))
        raw_s.append(seconds(lambda: bench.echo.pipelined(small, count)))
    rate, raw_rate = count / statistics.median(ours_s), count / statistics.median(raw_s)
    return {"commands": count, "tessera_per_s": rate, "raw_echo_per_s": raw_rate,
            "ratio": rate / raw_rate, "target": ">= 0.5"}


def bulk(bench: Bench, nbytes: int) -> dict[str, Any]:
    """send + get of a float32 tensor vs raw upload + download of the same bytes."""
    node_pid = bench.alice_proc.pid
    repeats = REPEATS if nbytes <= 64 * MIB else 1
    raw_ws, raw_tls = raw_round_trips(bench, nbytes, repeats)
    tensor = torch.empty(nbytes // 4).uniform_()
    times = []
    for _ in range(repeats):
        bench.alice.sync()
        reset_peak_rss(os.getpid())
        reset_peak_rss(node_pid)
        before = rss(os.getpid())
        start = time.perf_counter()
        pointer = bench.alice.send(tensor)
        back = pointer.get()
        times.append(time.perf_counter() - start)
        client_peak, node_peak = peak_rss(os.getpid()), peak_rss(node_pid)
        assert torch.equal(back, tensor)
        del back
        pointer.delete()
    bench.alice.sync()
    ours = statistics.median(times)
    return {
        "bytes": nbytes,
        "tessera_mb_s": 2 * nbytes / ours / 1e6,
        "raw_websockets_mb_s": 2 * nbytes / raw_ws / 1e6,
        "raw_tls_mb_s": 2 * nbytes / raw_tls / 1e6,
        "ratio": raw_ws / ours,
        "target": ">= 0.7",
        "client_peak_rss_x_payload": client_peak / nbytes,
        "node_peak_rss_x_payload": node_peak / nbytes,
        "client_growth_x_payload": (client_peak - before) / nbytes,
        "target_rss": "<= 2.5",
    }


def raw_round_trips(bench: Bench, nbytes: int, repeats: int) -> tuple[float, float]:
    """Seconds for upload + download of ``nbytes`` over raw websockets and raw TLS."""
    buffer = memoryview(bytearray(nbytes))

    def websockets_once() -> None:
        bench.bulk.upload(buffer)
        bench.bulk.download(buffer)

    def tls_once() -> None:
        bench.tls.upload(buffer)
        bench.tls.download(buffer)

    raw_ws = statistics.median(seconds(websockets_once) for _ in range(repeats))
    raw_tls = seconds(tls_once)
    bench.bulk.upload(memoryview(b"x"))  # let the raw servers free their copies
    bench.tls.upload(memoryview(b"x"))
    return raw_ws, raw_tls


def move(bench: Bench, nbytes: int) -> dict[str, Any]:
    """alice -> bob node to node vs one raw upload of the same bytes."""
    buffer = memoryview(bytearray(nbytes))
    raw = statistics.median(seconds(lambda: bench.bulk.upload(buffer)) for _ in range(REPEATS))
    bench.bulk.upload(memoryview(b"x"))
    bench.alice.send(torch.ones(4)).move(bench.bob)  # the link is pooled: open it first
    value = torch.empty(nbytes // 4).uniform_()
    times = []
    for _ in range(REPEATS):
        pointer = bench.alice.send(value)
        bench.alice.sync()
        times.append(seconds(lambda: pointer.move(bench.bob)))
        pointer.delete()
        bench.bob.sync()
    ours = statistics.median(times)
    return {"bytes": nbytes, "tessera_mb_s": nbytes / ours / 1e6, "raw_mb_s": nbytes / raw / 1e6,
            "ratio": raw / ours, "target": ">= 0.7"}


def measure(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "quick": quick,
        "event_loop": loops.loop_name(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(tmp)
        try:
            results["round_trip"] = round_trip(bench, 500 if quick else 3000)
            results["pipelined"] = pipelined(bench, 3000 if quick else 10_000)
            sizes = [MIB, 64 * MIB] if quick else [MIB, 64 * MIB, 1024 * MIB]
            results["bulk"] = [bulk(bench, n) for n in sizes]
            results["move"] = move(bench, 64 * MIB)
        finally:
            bench.close()
    return results


def report(results: dict[str, Any]) -> str:
    rt, pl, mv = results["round_trip"], results["pipelined"], results["move"]
    rows = [
        ("round trip median (us)", rt["tessera"]["median_us"], rt["raw_echo"]["median_us"],
         rt["ratio"], rt["target"]),
        ("round trip p99 (us)", rt["tessera"]["p99_us"], rt["raw_echo"]["p99_us"], None, ""),
        ("  same, in-process VirtualNode (us)", rt["in_process"]["median_us"], 0.0, None,
         "codec + session cost alone"),
        ("pipelined (commands/s)", pl["tessera_per_s"], pl["raw_echo_per_s"], pl["ratio"],
         pl["target"]),
    ]
    for row in results["bulk"]:
        rows.append((f"send+get {row['bytes'] // MIB} MiB (MB/s)", row["tessera_mb_s"],
                     row["raw_websockets_mb_s"], row["ratio"], row["target"]))
    rows.append((f"move {mv['bytes'] // MIB} MiB node to node (MB/s)", mv["tessera_mb_s"],
                 mv["raw_mb_s"], mv["ratio"], mv["target"]))
    lines = [f"{'measure':<38}{'tessera':>12}{'raw wss':>12}{'ratio':>8}  target"]
    for label, ours, raw, ratio, target in rows:
        shown = f"{ratio:>8.2f}" if ratio is not None else " " * 8
        lines.append(f"{label:<38}{ours:>12.0f}{raw:>12.0f}{shown}  {target}")
    lines.append("")
    lines.append(f"{'bulk size':<12}{'raw TLS MB/s':>14}{'client peak RSS':>17}{'node peak RSS':>15}"
                 f"{'client growth':>15}   (x payload; target <= 2.5)")
    for row in results["bulk"]:
        lines.append(f"{row['bytes'] // MIB:>6} MiB  {row['raw_tls_mb_s']:>14.0f}"
                     f"{row['client_peak_rss_x_payload']:>17.2f}{row['node_peak_rss_x_payload']:>15.2f}"
                     f"{row['client_growth_x_payload']:>15.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; under a minute")
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "transport.json")
    args = parser.parse_args()
    results = measure(args.quick)
    print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
