"""A network attacker on the LAN: plaintext downgrade and a different node answering on the URL.

The MITM is a real node process with its own key (bob) answering where the
client expected another node: a client that pins the expected node's
fingerprint, holds its certificate as CA file, or recorded it on first use
refuses the impostor before sending any protocol message; a node asked to
deliver there refuses it too.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from websockets.asyncio.client import connect as ws_connect

import node
from peer.security.trust import KnownNodes, TrustOnFirstUseWarning
from protocol.messages import AckReply, ErrorReply, ExpectRequest, GetReply, GetRequest, PutRequest, TransferRequest
from tests.security.attack_wire import Raw, codes, new_id
from tests.security.conftest import Bystander, bystander_fixture
from tests.support import NodeProcess

real = bystander_fixture("alice")


@pytest.fixture
def guard(real: Bystander, bob: NodeProcess) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """(the node the client wants, the impostor); both keep serving legitimate clients."""
    yield real.proc, bob
    real.check()
    with node.connect(bob.url, cafile=bob.cafile) as remote:
        assert torch.equal(remote.send(torch.ones(2)).get(), torch.ones(2))


def _client_name() -> str:
    return "victim-" + secrets.token_hex(6)


def _saw_client(proc: NodeProcess, name: str) -> bool:
    """Whether the node logged a handshake from a client of that name."""
    return f"{name} connected from" in proc.stderr()


def test_plaintext_client_against_tls_node(guard: tuple[NodeProcess, NodeProcess]) -> None:
    """Plaintext downgrade: a ws:// client (raw or node.connect) against a TLS node -> handshake fails (NodeUnavailable)."""
    target, _ = guard
    plain = target.url.replace("wss://", "ws://", 1)

    async def raw_plaintext() -> None:
        async with ws_connect(plain, open_timeout=5) as ws:
            await ws.send(b"\0" * 8)

    with pytest.raises(Exception):
        asyncio.run(raw_plaintext())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", node.InsecureConnectionWarning)
        with pytest.raises(node.NodeUnavailable):
            node.connect(plain, timeout=5)


def test_pinned_fingerprint_refuses_an_impostor(guard: tuple[NodeProcess, NodeProcess]) -> None:
    """MITM: another node answers on the URL while the client pins the real fingerprint -> CertificateMismatch."""
    target, impostor = guard
    name = _client_name()
    with pytest.raises(node.CertificateMismatch) as refused:
        node.connect(impostor.url, fingerprint=target.fingerprint, client_name=name)
    assert target.fingerprint in str(refused.value) and impostor.fingerprint in str(refused.value)
    assert not _saw_client(impostor, name), "the client said hello to the impostor"


def test_cafile_refuses_an_impostor(guard: tuple[NodeProcess, NodeProcess]) -> None:
    """MITM with the real node's cert.pem as the client's CA file -> TLS verification error (NodeUnavailable)."""
    target, impostor = guard
    name = _client_name()
    with pytest.raises(node.NodeUnavailable, match="certificate verify failed"):
        node.connect(impostor.url, cafile=target.cafile, client_name=name)
    assert not _saw_client(impostor, name)


def test_trust_on_first_use_refuses_a_changed_certificate(
    guard: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    """TOFU: the address was first seen with the real certificate, now another answers -> CertificateMismatch."""
    target, impostor = guard
    known = tmp_path / "known_nodes.json"
    address = impostor.url.removeprefix("wss://")
    with pytest.warns(TrustOnFirstUseWarning):
        KnownNodes(known).check(address, target.fingerprint)  # first use saw the real node
    before = known.read_bytes()
    name = _client_name()
    with pytest.raises(node.CertificateMismatch, match="Someone may be intercepting"):
        node.connect(impostor.url, known_nodes=known, client_name=name)
    assert known.read_bytes() == before, "the impostor's certificate was recorded"
    assert not _saw_client(impostor, name)


def test_node_to_node_delivery_refuses_an_impostor(
    guard: tuple[NodeProcess, NodeProcess], shared_node: NodeProcess
) -> None:
    """MITM on a transfer: the impostor's URL with the real destination's fingerprint -> PEER_UNAVAILABLE, no data sent."""
    source, impostor = guard
    destination = shared_node
    own, dest, ticket = new_id(), new_id(), secrets.token_bytes(32)
    hellos_before = impostor.stderr().count(f"{source.node_id} connected from")

    async def run() -> tuple[Any, Any, Any, Any]:
        at_source = await Raw.open(source)
        at_destination = await Raw.open(destination)
        stored = await at_source.exchange([PutRequest(2, own, torch.tensor([3.0, 1.0, 4.0]))])
        assert codes(stored) == []
        expected = await at_destination.request(
            ExpectRequest(3, dest, source.node_id, source.fingerprint, ticket)
        )
        assert isinstance(expected, AckReply), expected
        answer = await at_source.request(TransferRequest(
            4, own, destination.node_id, impostor.url, destination.fingerprint, dest, ticket, True,
        ))
        landed = await at_destination.request(GetRequest(5, dest))
        kept = await at_source.request(GetRequest(6, own))
        for raw in (at_source, at_destination):
            await raw.close()
        return expected, answer, landed, kept

    _, answer, landed, kept = asyncio.run(run())
    assert isinstance(answer, ErrorReply) and answer.code == "PEER_UNAVAILABLE", answer
    assert isinstance(landed, ErrorReply) and landed.code == "NOT_FOUND"
    assert isinstance(kept, GetReply) and torch.equal(kept.value, torch.tensor([3.0, 1.0, 4.0]))
    assert impostor.stderr().count(f"{source.node_id} connected from") == hellos_before, (
        "the source node said hello (sent its proof) to the impostor"
    )
