"""Comparison rows of ``benchmarks.spdz``: DReLU, ReLU and max-pool on shares, 2 and 3 parties.

Called by :mod:`benchmarks.spdz`, which starts the node processes.  For each
case the client shares a random float tensor (values in [-8, 8], well inside
the 32-bit comparison width at 16 fractional bits), then times the op until
every party has stored its result share (a ``sync`` to each party, in
parallel): the provider's deal, the key stream, the online rounds, and the
chunking of tensors over 2^16 elements into pipelined steps.  The same run
times the plaintext torch op.

"e2e" includes the provider's work for the op (keys dealt when the op is
posted); "online" is the op alone, its keys dealt ahead with
``node.preprocess(..., wait=True)`` (untimed), as a deployment deals the
next batch's keys while the current one computes.

Rounds and bytes are not estimated: :func:`protocol_cost` runs the
production round protocols of the route (:mod:`node.mpc.compare`) in this
process on random shares, counts the openings, and encodes every party's
``mpc_open`` and every ``mpc_material`` letter exactly as the nodes encode
them, so "bytes per party" is what one party sends for one op and
"provider bytes" what the crypto provider sends each party (largest party).
The same in-process run gives "party CPU" (one party's process time for
the op, without I/O: the floor under "online") and "provider CPU" (the
dependent material's computation, which dealing ahead moves off the
critical path).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

import node
from benchmarks.spdz_common import plain_ms, sync_all, time_op
from protocol.codec import encode_message
from protocol.ids import RequestId
from protocol.mpc import SESSION_BYTES, CompareRoute, MpcMaterialRequest, MpcOpenRequest, WireCompare

from node.mpc.binary_material import BinaryDealer
from node.mpc.compare import compare_spec, route_of
from node.mpc.fss import FssDealer
from node.mpc.prg import random_ring
from node.mpc.rounds import Opening, RoundProtocol, run_local

__all__ = ["CRYPTEN", "RouteCost", "protocol_cost", "compare_rows", "compare_report"]

CHUNK = 1 << 16
"""Elements per comparison step (``node.client.mpc.compare_steps``): costs are per chunk, summed."""

CRYPTEN = {"relu 10^5": {"ttp_ms": 159.0, "tfp_ms": 130.0, "rounds": 9}}
"""CrypTen 0.4.1 measured on this machine (issue 13): ReLU of 10^5 elements, 2 parties, no TLS."""


@dataclass(frozen=True)
class RouteCost:
    """What one comparison op costs on the wire, from the production protocols."""

    rounds: int
    bytes_per_party: int
    provider_bytes_per_party: int
    party_cpu_ms: float
    """One party's CPU for the op (its protocol run in this process, no I/O): the online floor."""
    provider_cpu_ms: float
    """The provider's CPU to compute the op's dependent material (keys, explicit shares)."""


def protocol_cost(route: CompareRoute, parties: int, numel: int, width: int, relu: bool) -> RouteCost:
    """Rounds and frame bytes of one op on ``numel`` elements, summed over its 2^16-element chunks."""
    sizes = [CHUNK] * (numel // CHUNK) + ([numel % CHUNK] if numel % CHUNK else [])
    costs = [_chunk_cost(route, parties, size, width, relu) for size in dict.fromkeys(sizes)]
    by_size = dict(zip(dict.fromkeys(sizes), costs))
    return RouteCost(
        rounds=costs[0].rounds,
        bytes_per_party=sum(by_size[s].bytes_per_party for s in sizes),
        provider_bytes_per_party=sum(by_size[s].provider_bytes_per_party for s in sizes),
        party_cpu_ms=sum(by_size[s].party_cpu_ms for s in sizes),
        provider_cpu_ms=sum(by_size[s].provider_cpu_ms for s in sizes),
    )


def _chunk_cost(route: CompareRoute, n: int, numel: int, width: int, relu: bool) -> RouteCost:
    spec = compare_spec(route, (numel,), width, relu)
    provider = FssDealer() if route is CompareRoute.FSS else BinaryDealer()
    seeds = provider.seeds(n)
    start = time.process_time()
    dependent = provider.dependent([spec], seeds)
    provider_cpu = time.process_time() - start
    session = bytes(SESSION_BYTES)
    wire = (WireCompare((numel,), width, relu, route),)
    provider_bytes = max(
        encode_message(MpcMaterialRequest(RequestId(1), session, i, n, wire, seeds[i])).nbytes
        + (
            encode_message(MpcMaterialRequest(RequestId(1), session, i, n, wire, None, dependent[i])).nbytes
            if i in dependent
            else 0
        )
        for i in range(n)
    )
    sent = [0] * n
    shares = [random_ring((numel,)) for _ in range(n)]
    protocols = [
        _recorded(
            route_of(route).party_protocol(spec, i, n, seeds[i], tuple(dependent.get(i, ())), shares[i]),
            i, sent, n,
        )
        for i in range(n)
    ]
    _, rounds = run_local(protocols)
    start = time.process_time()  # again without the frame encoding: the parties' own work
    run_local([
        route_of(route).party_protocol(spec, i, n, seeds[i], tuple(dependent.get(i, ())), shares[i])
        for i in range(n)
    ])
    party_cpu = (time.process_time() - start) / n
    return RouteCost(rounds, max(sent), provider_bytes, party_cpu * 1e3, provider_cpu * 1e3)


def _recorded(protocol: RoundProtocol, party: int, sent: list[int], n: int) -> RoundProtocol:
    """``protocol``, adding the frame bytes of each of its openings (sent to n - 1 peers) to ``sent``."""
    round_index = 0
    try:
        opening = next(protocol)
        while True:
            frame = MpcOpenRequest(RequestId(1), bytes(SESSION_BYTES), party, 2 + round_index, opening.values)
            sent[party] += (n - 1) * encode_message(frame).nbytes
            round_index += 1
            opening = protocol.send((yield Opening(opening.values)))
    except StopIteration as stop:
        return stop.value


def compare_cases(quick: bool) -> list[tuple[str, tuple[int, ...], Callable[[Any], Any], bool, int]]:
    """(name, input shape, op, is_relu, repeats): the comparison rows."""
    return [
        ("drelu 10^3", (10**3,), lambda t: t.drelu() if hasattr(t, "drelu") else t >= 0, False, 10 if quick else 30),
        ("relu 10^3", (10**3,), lambda t: t.relu(), True, 10 if quick else 30),
        ("drelu 10^5", (10**5,), lambda t: t.drelu() if hasattr(t, "drelu") else t >= 0, False, 5 if quick else 15),
        ("relu 10^5", (10**5,), lambda t: t.relu(), True, 5 if quick else 15),
        ("relu 10^6", (10**6,), lambda t: t.relu(), True, 2 if quick else 5),
        ("max_pool2d 64x8x24x24", (64, 8, 24, 24), lambda t: F.max_pool2d(t, 2), True, 2 if quick else 5),
    ]


def uniform_input(shape: tuple[int, ...]) -> torch.Tensor:
    """Floats in [-8, 8]: inside the comparison width (|x| < 2^15 at 16 fractional bits)."""
    return (torch.rand(shape, dtype=torch.float64) * 16 - 8).to(torch.float32)


def compare_rows(
    parties: list[node.RemoteNode], provider: node.RemoteNode, route: str, quick: bool
) -> list[dict[str, Any]]:
    """Every comparison case among ``parties`` by ``route``, beside plain torch."""
    rows = []
    for name, shape, op, relu, repeats in compare_cases(quick):
        kind = None if name.startswith("max_pool2d") else ("relu" if relu else "drelu")
        plain = uniform_input(shape)
        x = node.share(plain, *parties, crypto_provider=provider, comparison=route)
        secure, best = time_op(lambda: op(x), lambda: sync_all(parties), repeats)
        online = None if kind is None else online_ms(x, kind, shape, parties, provider, route, repeats)
        error = float((op(x).get().to(torch.float64) - op(plain).to(torch.float64)).abs().max())
        numel = plain.numel()
        if name.startswith("max_pool2d"):
            cost = None
        else:
            cost = protocol_cost(CompareRoute(route), len(parties), numel, 32, relu)
        crypten = CRYPTEN.get(name, {}) if len(parties) == 2 else {}
        rows.append({
            "case": name, "parties": len(parties), "route": route,
            "secure_ms": secure, "secure_min_ms": best, "online_ms": online, "plain_ms": plain_ms(lambda: op(plain), repeats),
            "elements": numel, "rounds": cost.rounds if cost else None,
            "bytes_sent_per_party": cost.bytes_per_party if cost else None,
            "provider_bytes_per_party": cost.provider_bytes_per_party if cost else None,
            "party_cpu_ms": cost.party_cpu_ms if cost else None,
            "provider_cpu_ms": cost.provider_cpu_ms if cost else None,
            "max_abs_error": error, "crypten_ttp_ms": crypten.get("ttp_ms"),
            "crypten_tfp_ms": crypten.get("tfp_ms"), "crypten_rounds": crypten.get("rounds"),
            "repeats": repeats,
        })
    return rows


def online_ms(
    x: Any, kind: str, shape: tuple[int, ...], parties: list[node.RemoteNode], provider: node.RemoteNode,
    route: str, repeats: int,
) -> float:
    """Median milliseconds of the op alone, its keys dealt ahead (``node.preprocess(..., wait=True)``)."""
    samples = []
    for _ in range(repeats + 1):
        node.preprocess(kind, shape, *parties, crypto_provider=provider, comparison=route, wait=True)
        start = time.perf_counter()
        x.relu() if kind == "relu" else x.drelu()
        sync_all(parties)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:]) * 1e3


def compare_report(rows: list[dict[str, Any]]) -> None:
    header = (f"{'case':<24}{'parties':>8}{'route':>6}{'e2e ms':>9}{'online ms':>10}{'plain ms':>10}{'rounds':>7}"
              f"{'MB/party':>10}{'provider MB':>12}{'party CPU':>10}{'prov. CPU':>10}{'CrypTen ms':>14}")
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        sent = f"{r['bytes_sent_per_party'] / 1e6:.2f}" if r["bytes_sent_per_party"] else "-"
        dealt = f"{r['provider_bytes_per_party'] / 1e6:.1f}" if r["provider_bytes_per_party"] else "-"
        crypten = f"{r['crypten_ttp_ms']:.0f}/{r['crypten_tfp_ms']:.0f}" if r["crypten_ttp_ms"] else "-"
        rounds = r["rounds"] if r["rounds"] is not None else "-"
        party_cpu = f"{r['party_cpu_ms']:.1f}" if r["party_cpu_ms"] is not None else "-"
        provider_cpu = f"{r['provider_cpu_ms']:.0f}" if r["provider_cpu_ms"] is not None else "-"
        online = f"{r['online_ms']:.1f}" if r["online_ms"] is not None else "-"
        print(f"{r['case']:<24}{r['parties']:>8}{r['route']:>6}{r['secure_ms']:>9.1f}{online:>10}{r['plain_ms']:>10.3f}"
              f"{rounds:>7}{sent:>10}{dealt:>12}{party_cpu:>10}{provider_cpu:>10}{crypten:>14}")
