"""Opening handshakes under load: how many take longer than a second (issue 15).

    python -m benchmarks.handshakes                    # 4 x 2,000 handshakes, every core busy
    python -m benchmarks.handshakes --kinds client-concurrent --handshakes 3000
    python -m benchmarks.handshakes --burners 0        # a quiet machine

One node (TLS, tokens) runs as a separate process; burner processes keep
every core busy (``--burn python`` loops by default, or ``torch`` matmuls),
and with ``--node-load`` a client also keeps the node itself computing.
Four kinds of opening handshakes are timed, each from the dial to the hello
reply (TCP, TLS, HTTP upgrade, hello and its proof):

- ``client concurrent``: ``node.connect`` + close from ``--concurrency``
  threads at once (the synchronous client: websockets' reader thread and the
  caller's thread on one TLS connection);
- ``client sequential``: the same from one thread;
- ``node concurrent``: :class:`~peer.client.async_channel.AsyncChannel` links
  with a node identity's proof and the network key (what a node's links to
  other nodes are), opened by ``--concurrency`` tasks on one event loop;
- ``node sequential``: the same, one at a time.

Reported per kind: handshakes, failures (by exception type, with an
example; ``ESCAPED`` marks an exception that is not a Tessera error),
median, p99 and max, and how many took longer than 1 s.  JSON in
``artifacts/handshakes.json``.  Nothing is asserted, and nothing here runs in
the test suite: it saturates the machine on purpose.

Before commit 16afc62 one to five client handshakes in 1,000 waited for the
10 s open time-out (the synchronous client's reader thread and the caller
used one OpenSSL connection at once: :mod:`peer.transport.tls_socket`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from websockets.version import version as websockets_version

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (\S+) fingerprint (\S+)")
SLOW = 1.0
"""Seconds above which a handshake counts as slow."""

BURNERS = {
    "python": "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n",
    "torch": "import os, torch\ntorch.set_num_threads(1)\nparent = os.getppid()\na = torch.randn(256, 256)\n"
             "while os.getppid() == parent:\n    a = torch.tanh(a @ a)\n",
}
"""Busy work for one core; each exits when this benchmark does, however it ends."""

KINDS = ("client concurrent", "client sequential", "node concurrent", "node sequential")


@dataclasses.dataclass
class Kind:
    """One kind of handshake and what its runs measured."""

    name: str
    seconds: list[float] = dataclasses.field(default_factory=list)
    failures: Counter[str] = dataclasses.field(default_factory=Counter)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)

    def failed(self, exc: BaseException, what: str = "") -> None:
        from protocol.errors import TesseraError

        escaped = "" if isinstance(exc, TesseraError) else "ESCAPED "
        name = f"{what}{escaped}{type(exc).__module__}.{type(exc).__name__}"
        self.failures[name] += 1
        self.examples.setdefault(name, str(exc)[:300])

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.seconds)
        if not ordered:
            return {"handshakes": 0, "failures": dict(self.failures), "examples": self.examples}
        return {
            "handshakes": len(ordered),
            "failures": dict(self.failures),
            "examples": self.examples,
            "median_ms": statistics.median(ordered) * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
            "max_ms": ordered[-1] * 1e3,
            "slower_than_1s": sum(1 for s in ordered if s > SLOW),
            "slowest_ms": [round(s * 1e3, 1) for s in ordered[-5:]],
        }


def start_node(state_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "--id", "target", "--port", "0", "--state-dir", str(state_dir),
         "--log-level", "error"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None
    match = LISTENING.search(process.stdout.readline())
    if match is None:
        process.kill()
        raise SystemExit("the node did not start")
    return process, match.group(1), match.group(2)


def node_load(url: str, fingerprint: str, stop: threading.Event) -> None:
    """Keep the node computing: matmuls on it, one result fetched now and then."""
    import torch

    import node

    remote = node.connect(url, fingerprint=fingerprint)
    try:
        a: Any = remote.send(torch.randn(384, 384))  # Pointer ops are added dynamically
        while not stop.is_set():
            b = a @ a
            (b @ a).sum().get()
    finally:
        remote.close()


def client_runs(kind: Kind, count: int, threads: int, connect: Callable[[], Any]) -> None:
    """``count`` client handshakes from ``threads`` threads."""
    lock = threading.Lock()
    left = [count]

    def work() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            started = time.perf_counter()
            try:
                remote = connect()
            except Exception as exc:
                with lock:
                    kind.failed(exc)
                continue
            took = time.perf_counter() - started
            try:
                remote.close()
            except Exception as exc:
                with lock:
                    kind.failed(exc, "close: ")
            with lock:
                kind.seconds.append(took)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


async def node_runs(kind: Kind, count: int, tasks: int, url: str, fingerprint: str, state_dir: Path) -> None:
    """``count`` node-to-node handshakes from ``tasks`` tasks on this loop."""
    from peer.client.async_channel import AsyncChannel
    from peer.client.endpoint import Endpoint
    from peer.security.identity import ensure_identity
    from peer.security.proof import node_credentials
    from peer.security.tokens import network_key
    from peer.security.trust import TrustPolicy

    identity = ensure_identity(state_dir, "dialer", ("127.0.0.1",))
    key = network_key(os.environ["TESSERA_NETWORK_TOKEN"])

    def credentials(peer: str | None) -> dict[str, Any]:
        return node_credentials(identity, "dialer", peer, network=key)

    fields = {f.name for f in dataclasses.fields(Endpoint)}
    extra: dict[str, Any] = {"network": key} if "network" in fields else {}
    endpoint = Endpoint(url, TrustPolicy(fingerprint=fingerprint), "dialer", credentials, roles=("node",), **extra)
    left = [count]

    async def work() -> None:
        while left[0] > 0:
            left[0] -= 1
            channel = AsyncChannel(endpoint)
            started = time.perf_counter()
            try:
                await channel.open()
            except Exception as exc:
                kind.failed(exc)
                continue
            kind.seconds.append(time.perf_counter() - started)
            try:
                await channel.aclose()
            except Exception as exc:
                kind.failed(exc, "close: ")

    await asyncio.gather(*(work() for _ in range(tasks)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=2000, help="of each kind")
    parser.add_argument("--kinds", default=",".join(k.replace(" ", "-") for k in KINDS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--concurrency", type=int, default=4, help="threads or tasks of the concurrent kinds")
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 1, help="busy processes")
    parser.add_argument("--burn", choices=sorted(BURNERS), default="python", help="what the burners run")
    parser.add_argument("--node-load", action="store_true", help="also keep the node computing matmuls")
    parser.add_argument("--cafile", action="store_true",
                        help="clients verify the node's cert.pem as a CA file instead of pinning its fingerprint")
    parser.add_argument("--open-timeout", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=ROOT / "artifacts" / "handshakes.json")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from benchmarks.credentials import admit_benchmark_user
    from peer.transport import loops

    import node

    wanted = {name.strip().replace("-", " ") for name in args.kinds.split(",")}
    if not wanted <= set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(wanted - set(KINDS)))}")
    kinds = [Kind(name) for name in KINDS if name in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "target"
        admit_benchmark_user(state)
        process, url, fingerprint = start_node(state)
        burners = [subprocess.Popen([sys.executable, "-c", BURNERS[args.burn]]) for _ in range(args.burners)]
        stop = threading.Event()
        loader = None
        if args.node_load:
            loader = threading.Thread(target=node_load, args=(url, fingerprint, stop), daemon=True)
            loader.start()
        started = time.perf_counter()
        try:
            trust: dict[str, Any] = {"cafile": state / "cert.pem"} if args.cafile else {"fingerprint": fingerprint}

            def connect() -> Any:
                return node.connect(url, timeout=args.open_timeout, **trust)

            dialer = Path(tmp) / "dialer"
            for kind in kinds:
                width = args.concurrency if kind.name.endswith("concurrent") else 1
                if kind.name.startswith("client"):
                    client_runs(kind, args.handshakes, width, connect)
                else:
                    loops.run(node_runs(kind, args.handshakes, width, url, fingerprint, dialer))
        finally:
            stop.set()
            for burner in burners:
                burner.kill()
            if loader is not None:
                loader.join(timeout=30)
            process.terminate()
            process.wait(timeout=30)
        elapsed = time.perf_counter() - started

    results = {kind.name: kind.summary() for kind in kinds}
    print(f"{'kind':<18} {'n':>5} {'fail':>5} {'median ms':>10} {'p99 ms':>8} {'max ms':>9} {'> 1 s':>6}")
    for name, row in results.items():
        if row["handshakes"]:
            print(f"{name:<18} {row['handshakes']:>5} {sum(row['failures'].values()):>5} "
                  f"{row['median_ms']:>10.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>9.1f} {row['slower_than_1s']:>6}")
        for failure, times in row["failures"].items():
            print(f"    {times} x {failure}: {row['examples'][failure]}")
    report = {
        "kinds": results,
        "handshakes": sum(r["handshakes"] for r in results.values()),
        "slower_than_1s": sum(r.get("slower_than_1s", 0) for r in results.values()),
        "seconds": elapsed,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION,
            "websockets": websockets_version,
            "loop": loops.loop_name(),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=ROOT).stdout.strip(),
        },
    }
    print(f"{report['handshakes']} handshakes in {elapsed:.0f} s, {report['slower_than_1s']} slower than 1 s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
