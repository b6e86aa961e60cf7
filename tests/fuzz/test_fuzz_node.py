"""A live node fed a few hundred random and mutated frames keeps answering, computing and its objects.

The fast slice of the node fuzzing (``benchmarks.fuzz`` is the long run).
Inputs are seeded, so every run sends the same frames.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import random
import ssl
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import node
from node.server.runtime import NodeServer
from node.server.users import UserDirectory
from peer.security.tokens import parse_user_token
from node.settings import NodeSettings
from protocol.codec import decode_message, encode_message_bytes
from protocol.ids import NodeId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import ErrorReply, HelloRequest, PutRequest, TransferRequest
from tests.fuzz.corpus import field_names, random_input, seed_frames
from tests.fuzz.wire import FeedReport, Target, feed, handshake, open_link, recv
from tests.support import NETWORK_TOKEN, USER_TOKEN, NodeProcess, admit, start_node

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
    proc.extra["fuzzer"] = admit(proc.state_dir, "fuzzer")  # a principal apart from the test user
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
        report = asyncio.run(feed(Target(fuzz_node.url, fuzz_node.cafile, fuzz_node.extra["fuzzer"]), frames, batch=20))
        _assert_clean(report, fuzz_node)
        assert report.frames == len(frames) and report.handshakes > 0 and report.codes["BAD_MESSAGE"] > 0
        x, y = client.send(torch.tensor([1.0, 2.0])), client.send(torch.tensor([3.0, 4.0]))
        assert torch.equal((x + y).get(), torch.tensor([4.0, 6.0]))  # type: ignore[operator]
        assert torch.equal(kept.get(), torch.arange(6.0)), "an object stored before the fuzzing was lost"
    finally:
        client.close()
    assert fuzz_node.process.poll() is None


def test_fuzzed_first_frames(fuzz_node: NodeProcess) -> None:
    """Random frames as the first frame of fresh connections are answered or closed, never hang."""
    rng = random.Random(SEED + 1)
    frames = _fuzz_inputs(fuzz_node, 40, SEED + 2)
    target = Target(fuzz_node.url, fuzz_node.cafile, fuzz_node.extra["fuzzer"])

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


def certificate_with_invalid_key() -> bytes:
    """A self-signed P-256 certificate (DER) whose public point has one bit flipped: off the curve."""
    key = ec.derive_private_key(1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    der[der.index(point) + 1] ^= 1
    return bytes(der)


def test_node_hello_with_an_off_curve_key_is_unauthenticated(spawn_node: Callable[..., NodeProcess]) -> None:
    """A node-scheme hello whose certificate key is not on its curve gets UNAUTHENTICATED, not INTERNAL."""
    proc = spawn_node("proof", "--log-level", "warning")
    credentials = {"scheme": "node", "node_id": "x", "certificate": certificate_with_invalid_key(),
                   "timestamp": int(time.time()), "nonce": bytes(16), "signature": bytes(70)}
    hello = HelloRequest(1, PROTOCOL_VERSION, "peer", ("node",), credentials)  # type: ignore[arg-type]
    report = FeedReport()
    asyncio.run(handshake(Target(proc.url, proc.cafile, admit(proc.state_dir, "fuzzer")), encode_message_bytes(hello), report))
    assert dict(report.codes) == {"UNAUTHENTICATED": 1}  # was INTERNAL before 31916d2 (found by fuzzing)
    assert "Traceback" not in proc.stderr()


def test_closed_connections_are_freed_without_the_cycle_collector(tmp_path: Path) -> None:
    """A node's objects for a closed connection are freed by reference counting alone."""

    async def run() -> int:
        UserDirectory(tmp_path).add(parse_user_token(USER_TOKEN))
        server = NodeServer(NodeSettings(node_id=NodeId("cycle"), state_dir=tmp_path, port=0))
        await server.start()
        assert server.identity is not None
        try:
            gc.collect()
            gc.disable()
            for _ in range(3):
                ws = await open_link(Target(f"wss://127.0.0.1:{server.port}", server.identity.cert_path, USER_TOKEN))
                await ws.close()
            await asyncio.sleep(0.5)
            return sum(type(o).__name__ == "_ServerConnection" for o in gc.get_objects())
        finally:
            gc.enable()
            await server.close()

    assert asyncio.run(run()) == 0


def test_failed_transfer_links_are_not_kept(tmp_path: Path) -> None:
    """Transfers to unreachable destinations leave no pooled link behind."""

    async def run() -> tuple[set[str], int]:
        UserDirectory(tmp_path).add(parse_user_token(USER_TOKEN))
        settings = NodeSettings(node_id=NodeId("links"), state_dir=tmp_path, port=0, network_token=NETWORK_TOKEN)
        server = NodeServer(settings)  # a member: only members send to other nodes
        await server.start()
        assert server.identity is not None and server.transfers is not None
        try:
            ws = await open_link(Target(f"wss://127.0.0.1:{server.port}", server.identity.cert_path, USER_TOKEN))
            await ws.send(encode_message_bytes(PutRequest(2, 7, torch.ones(2))))  # type: ignore[arg-type]
            codes = set()
            for i in range(20):
                fingerprint = "sha256:" + f"{i:064x}"
                transfer = TransferRequest(10 + i, 7, "peer", "wss://127.0.0.1:9", fingerprint, 99, bytes(32), False)  # type: ignore[arg-type]
                await ws.send(encode_message_bytes(transfer))
                reply = decode_message(await recv(ws, 15))
                codes.add(reply.code if isinstance(reply, ErrorReply) else reply.KIND.value)
            await ws.close()
            return codes, len(server.transfers._links) + len(server.transfers._dialing)
        finally:
            await server.close()

    codes, kept = asyncio.run(run())
    assert codes == {"PEER_UNAVAILABLE"}
    assert kept == 0, f"{kept} links and dial locks kept after 20 failed transfers"
