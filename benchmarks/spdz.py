"""SPDZ across node processes over TLS: Beaver products against plain torch and CrypTen.

    python -m benchmarks.spdz                    # a few minutes
    python -m benchmarks.spdz --quick            # fewer repeats
    python -m benchmarks.spdz --only compare     # one group of rows: products, compare, models

Two party nodes (bob, alice) and a crypto provider (charlie) run as
separate ``python -m node`` processes on loopback, with TLS and
authentication as deployed (:mod:`benchmarks.credentials`); the client runs
here.  For each case the client shares two random float tensors, then times
``z = x * y`` (or ``x @ y``) until both parties have stored their share of
the truncated product (a ``sync`` to each party, in parallel): deal,
masking, the peer-to-peer opening, finishing and SecureML truncation.  The
same run times the plaintext torch op.  Bytes sent per party are the sizes
of the message frames it sends for one product (its ``mpc_open``, encoded
here exactly as the node encodes it; the kernel's per-socket counters are
not visible in this sandbox, and TLS adds about 22 bytes per 16 KiB record
on top), next to the theoretical minimum of Beaver multiplication with
additive shares (each party sends eps_i and delta_i once to the other:
8 (|x| + |y|) bytes, one round).  The comparison rows (DReLU, ReLU,
max-pool; 2 parties by function secret sharing, 3 parties by
arithmetic-to-binary conversion, with a third party node dave) are
:mod:`benchmarks.spdz_compare`'s.  Results: tables, and JSON in
``artifacts/spdz.json``.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

import node
from benchmarks.credentials import admit_benchmark_user
from benchmarks.spdz_common import median_ms, plain_ms, sync_all
from benchmarks.spdz_compare import CRYPTEN, compare_report, compare_rows
from benchmarks.spdz_models import model_report, model_rows
from protocol.codec import encode_message
from protocol.ids import RequestId
from protocol.messages import SyncReply, SyncRequest
from protocol.mpc import SESSION_BYTES, BilinearKind, MpcMaterialRequest, MpcOpenRequest, OpenRound, WireTriple

ROOT = Path(__file__).resolve().parent.parent
STARTUP = re.compile(r"^node (\S+) listening on (\S+) fingerprint (\S+)")

CRYPTEN_MS = {"mul 10^3": 5.1, "mul 10^6": 105.0, "matmul 512x512": 85.0}
"""CrypTen 0.4.1 on this machine (two party processes and its TTP over gloo TCP, no TLS)."""


def start(node_id: str, state: Path) -> tuple[subprocess.Popen[str], str, Path]:
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "--id", node_id, "--port", "0", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None
    match = STARTUP.match(process.stdout.readline())
    if match is None:
        process.kill()
        raise RuntimeError(f"node {node_id} did not start")
    return process, match.group(2), state / "cert.pem"


def frame_bytes(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> tuple[int, int]:
    """Frame bytes a party sends per product (its opening) and the provider sends in all."""
    ring = lambda t: torch.zeros(t.shape, dtype=torch.int64)  # noqa: E731
    session = bytes(SESSION_BYTES)
    opening = encode_message(
        MpcOpenRequest(RequestId(1), session, 0, OpenRound.BEAVER, (ring(a), ring(b)))
    ).nbytes
    spec = (WireTriple(BilinearKind.MUL, tuple(a.shape), tuple(b.shape)),)
    seeds = 2 * encode_message(MpcMaterialRequest(RequestId(1), session, 0, 2, spec, bytes(16))).nbytes
    explicit = encode_message(
        MpcMaterialRequest(RequestId(1), session, 1, 2, spec, None, (ring(out),))
    ).nbytes
    return opening, seeds + explicit


def run_case(
    name: str, a: torch.Tensor, b: torch.Tensor, op: Callable[[Any, Any], Any],
    parties: list[node.RemoteNode], provider: node.RemoteNode, repeats: int,
) -> dict[str, Any]:
    x = node.share(a, *parties, crypto_provider=provider)
    y = node.share(b, *parties, crypto_provider=provider)
    for _ in range(2):  # warm up: links dialed, buffers allocated
        op(x, y)
        sync_all(parties)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        op(x, y)
        sync_all(parties)
        samples.append(time.perf_counter() - start)
    z = op(x, y)
    error = float((z.get() - op(a, b)).abs().max())
    secure = median_ms(samples)
    plain = plain_ms(lambda: op(a, b), repeats)
    expected = op(a, b)
    out_elements = expected.numel()
    opening, provider_bytes = frame_bytes(a, b, expected)
    minimum = 8 * (a.numel() + b.numel())
    crypten = CRYPTEN_MS.get(name)
    return {
        "case": name,
        "secure_ms": secure,
        "secure_min_ms": min(samples) * 1e3,
        "plain_ms": plain,
        "ratio_to_plain": secure / plain if plain else None,
        "elements_per_s": out_elements / (secure / 1e3),
        "rounds": 1,
        "rounds_minimum": 1,
        "bytes_sent_per_party": opening,
        "bytes_sent_provider": provider_bytes,
        "bytes_minimum_per_party": minimum,
        "max_abs_error": error,
        "crypten_ms": crypten,
        "target_ms": crypten / 2 if crypten else None,
        "repeats": repeats,
    }


GROUPS = ("products", "compare", "models")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", choices=GROUPS, action="append", help="run only these groups of rows")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "spdz.json")
    args = parser.parse_args()
    groups = set(args.only or GROUPS)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="tessera-spdz-"))
    states = {n: tmp / n for n in ("bob", "alice", "charlie", "dave")}
    admit_benchmark_user(*states.values())
    started = {n: start(n, state) for n, state in states.items()}
    out: dict[str, Any] = {}
    try:
        handles = {n: node.connect(url, cafile=cafile) for n, (_, url, cafile) in started.items()}
        parties = [handles["bob"], handles["alice"]]
        provider = handles["charlie"]
        few = args.quick
        if "products" in groups:
            cases = [
                ("mul 10^3", torch.randn(10**3), torch.randn(10**3), lambda p, q: p * q, 20 if few else 100),
                ("mul 10^5", torch.randn(10**5), torch.randn(10**5), lambda p, q: p * q, 10 if few else 30),
                ("mul 10^6", torch.randn(10**6), torch.randn(10**6), lambda p, q: p * q, 5 if few else 15),
                ("matmul 128x128", torch.randn(128, 128), torch.randn(128, 128), lambda p, q: p @ q, 20 if few else 50),
                ("matmul 512x512", torch.randn(512, 512), torch.randn(512, 512), lambda p, q: p @ q, 5 if few else 15),
            ]
            out["products"] = [run_case(name, a, b, op, parties, provider, n) for name, a, b, op, n in cases]
            report(out["products"])
        if "compare" in groups:
            out["compare"] = [
                *compare_rows(parties, provider, "fss", few),
                *compare_rows([*parties, handles["dave"]], provider, "a2b", few),
            ]
            compare_report(out["compare"])
        if "models" in groups:
            out["models"] = model_rows(parties, provider, few)
            model_report(out["models"])
        for handle in handles.values():
            handle.close()
    finally:
        for process, _, _ in started.values():
            process.terminate()
            process.wait(timeout=15)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "node_torch_threads": 1, "tls": True, "truncation": "local (SecureML)",
            "compare_width": 32, "crypten": {"products_ms": CRYPTEN_MS, "compare": CRYPTEN}}
    args.out.write_text(json.dumps({"meta": meta, **out}, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


def report(results: list[dict[str, Any]]) -> None:
    header = (f"{'case':<16}{'secure ms':>10}{'plain ms':>10}{'elem/s':>11}{'rounds':>7}"
              f"{'MB sent/party':>15}{'MB min':>8}{'CrypTen ms':>11}{'target':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        sent = r["bytes_sent_per_party"] / 1e6
        crypten = f"{r['crypten_ms']:.1f}" if r["crypten_ms"] else "-"
        target = f"{r['target_ms']:.1f}" if r["target_ms"] else "-"
        print(f"{r['case']:<16}{r['secure_ms']:>10.2f}{r['plain_ms']:>10.3f}{r['elements_per_s']:>11.3g}"
              f"{r['rounds']:>4}/{r['rounds_minimum']:<2}{sent:>15.3f}{r['bytes_minimum_per_party'] / 1e6:>8.3f}"
              f"{crypten:>11}{target:>8}")


if __name__ == "__main__":
    main()
