"""Tessera's transport against raw WebSockets on the same TLS settings, in one run.

    python -m benchmarks.transport [--quick] [--json PATH]

A node and a raw ``websockets`` echo server (same certificate kind, same TLS
context, compression off) each run in their own process on loopback; the
client side of both runs here.  Every Tessera figure is printed next to its
raw baseline and the ratio, and everything is written as JSON.  Nothing here
asserts a timing: the numbers are for people.
"""

from __future__ import annotations

import argparse
import asyncio
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

ROOT = Path(__file__).resolve().parent.parent
STARTUP = re.compile(r"listening on (\S+) fingerprint (\S+)")


# -- the raw baseline server -------------------------------------------------


async def _echo_server(state_dir: Path) -> None:
    from websockets.asyncio.server import serve

    from node.transport.identity import ensure_identity
    from node.transport.tls import server_ssl_context

    identity = ensure_identity(state_dir, "echo", ("127.0.0.1",))

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(
        echo, "127.0.0.1", 0, ssl=server_ssl_context(identity), compression=None, max_size=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"echo listening on wss://127.0.0.1:{port} fingerprint {identity.fingerprint}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


# -- helpers -------------------------------------------------------------------


def _spawn(args: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None
    match = STARTUP.search(process.stdout.readline())
    if not match:
        process.kill()
        raise RuntimeError(f"could not start {args}")
    return process, match.group(1), match.group(2)


def _latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


def _timed(repeat: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


class RawClient:
    """A plain websockets client on its own loop thread, same TLS trust as ours."""

    def __init__(self, url: str, fingerprint: str) -> None:
        import threading

        from node.transport.tls import client_ssl_context
        from node.transport.trust import TrustPolicy

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        context = client_ssl_context(TrustPolicy(fingerprint=fingerprint))
        self.ws = self.run(self._connect(url, context))

    async def _connect(self, url: str, context: Any) -> Any:
        from websockets.asyncio.client import connect

        return await connect(url, ssl=context, compression=None, max_size=None, proxy=None)

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _echo(self, payload: bytes) -> bytes:
        await self.ws.send(payload)
        return await self.ws.recv()  # type: ignore[no-any-return]

    def echo(self, payload: bytes) -> bytes:
        return self.run(self._echo(payload))  # type: ignore[no-any-return]

    async def _pipelined(self, payload: bytes, count: int) -> None:
        async def send_all() -> None:
            for _ in range(count):
                await self.ws.send(payload)

        sender = asyncio.create_task(send_all())
        for _ in range(count):
            await self.ws.recv()
        await sender

    def pipelined(self, payload: bytes, count: int) -> None:
        self.run(self._pipelined(payload, count))

    async def _bulk(self, view: memoryview, fragment: int) -> int:
        chunks = [view[i : i + fragment] for i in range(0, view.nbytes, fragment)]
        await self.ws.send(chunks)
        return len(await self.ws.recv())

    def bulk(self, view: memoryview, fragment: int = 1 << 20) -> int:
        return self.run(self._bulk(view, fragment))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.run(self.ws.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


# -- measurements ----------------------------------------------------------------


def measure(quick: bool) -> dict[str, Any]:
    import node
    from protocol.codec import encode_message
    from protocol.messages import GetRequest

    repeat = 300 if quick else 2000
    pipelined = 2000 if quick else 10_000
    sizes = [1 << 20, 16 << 20] if quick else [1 << 20, 64 << 20]
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "quick": quick,
    }
    with tempfile.TemporaryDirectory() as tmp:
        node_proc, node_url, node_fp = _spawn(
            ["-m", "node", "--id", "bench", "--port", "0", "--state-dir", f"{tmp}/node",
             "--log-level", "warning", "--max-message-mib", "1024"])
        echo_proc, echo_url, echo_fp = _spawn(["-m", "benchmarks.transport", "--echo-server", f"{tmp}/echo"])
        try:
            remote = node.connect(node_url, fingerprint=node_fp, max_message_bytes=1 << 30)
            raw = RawClient(echo_url, echo_fp)
            x, y = remote.send(torch.arange(10.0)), remote.send(torch.ones(10))
            remote.sync()
            get_size = encode_message(GetRequest(1, 2**63, False)).nbytes
            small = b"\0" * get_size

            for _ in range(50):
                (x + y).get()
                raw.echo(small)
            ours = _latency(_timed(repeat, lambda: (x + y).get()))
            base = _latency(_timed(repeat, lambda: raw.echo(small)))
            results["round_trip"] = {"tessera": ours, "raw_echo": base,
                                     "ratio": ours["median_us"] / base["median_us"],
                                     "target": "<= 1.5"}

            start = time.perf_counter()
            for _ in range(pipelined):
                x + y
            remote.sync()
            ours_rate = pipelined / (time.perf_counter() - start)
            start = time.perf_counter()
            raw.pipelined(small, pipelined)
            raw_rate = pipelined / (time.perf_counter() - start)
            results["pipelined"] = {"commands": pipelined, "tessera_per_s": ours_rate,
                                    "raw_echo_per_s": raw_rate, "ratio": ours_rate / raw_rate,
                                    "target": ">= 0.5"}

            bulk = []
            for nbytes in sizes:
                tensor = torch.rand(nbytes // 4)
                view = memoryview(bytearray(nbytes))
                start = time.perf_counter()
                pointer = remote.send(tensor)
                back = pointer.get(delete=True)
                ours_s = time.perf_counter() - start
                assert back.shape == tensor.shape
                start = time.perf_counter()
                raw.bulk(view)
                raw_s = time.perf_counter() - start
                bulk.append({"bytes": nbytes, "tessera_mb_s": 2 * nbytes / ours_s / 1e6,
                             "raw_mb_s": 2 * nbytes / raw_s / 1e6, "ratio": raw_s / ours_s,
                             "target": ">= 0.7"})
                del pointer, back, tensor
            results["bulk"] = bulk
            remote.close()
            raw.close()
        finally:
            for process in (node_proc, echo_proc):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    return results


def report(results: dict[str, Any]) -> str:
    rt, pl = results["round_trip"], results["pipelined"]
    lines = [
        f"{'measure':<34}{'tessera':>14}{'raw':>14}{'ratio':>8}  target",
        f"{'round trip median (us)':<34}{rt['tessera']['median_us']:>14.0f}"
        f"{rt['raw_echo']['median_us']:>14.0f}{rt['ratio']:>8.2f}  {rt['target']}",
        f"{'round trip p99 (us)':<34}{rt['tessera']['p99_us']:>14.0f}{rt['raw_echo']['p99_us']:>14.0f}",
        f"{'pipelined (commands/s)':<34}{pl['tessera_per_s']:>14.0f}{pl['raw_echo_per_s']:>14.0f}"
        f"{pl['ratio']:>8.2f}  {pl['target']}",
    ]
    for row in results["bulk"]:
        label = f"send+get {row['bytes'] >> 20} MiB (MB/s)"
        lines.append(f"{label:<34}{row['tessera_mb_s']:>14.0f}{row['raw_mb_s']:>14.0f}"
                     f"{row['ratio']:>8.2f}  {row['target']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; under a minute")
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "transport.json")
    parser.add_argument("--echo-server", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        asyncio.run(_echo_server(args.echo_server))
        return 0
    results = measure(args.quick)
    print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
