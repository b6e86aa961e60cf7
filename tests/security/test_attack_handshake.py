"""Forging, replaying and relaying node proofs; switching identity mid-connection.

A node proves who it is with a signature over its id, a timestamp, a nonce
and the fingerprint of the server it is talking to (``peer/security/proof.py``).
Proofs captured by an attacker here are genuine: they are signed with node
alice's real key, read from its state directory, or captured off the wire
from the real alice process by a malicious server it was asked to deliver
to.  Every refused hello is ``UNAUTHENTICATED`` followed by close 1008.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import pytest
import torch
from websockets.asyncio.server import ServerConnection, serve

from peer.security.identity import Identity
from peer.security.proof import node_credentials
from peer.security.tokens import (
    network_key,
    new_network_token,
    new_user_token,
    parse_user_token,
    user_credentials,
)
from peer.transport.tls import server_ssl_context
from protocol.codec import decode_message
from protocol.messages import (
    ErrorReply,
    GetRequest,
    HelloReply,
    HelloRequest,
    ListRequest,
    PutRequest,
    TransferRequest,
)
from tests.security.attack_wire import (
    Raw,
    admit_user,
    anonymous,
    as_user,
    codes,
    hello,
    new_id,
    node_hello,
    refused_hello,
)
from tests.security.conftest import Bystander, bystander_fixture, stolen_identity
from tests.support import ROOT, NodeProcess

bystander = bystander_fixture("bob")

POLICY_VIOLATION = 1008


@pytest.fixture
def bob_guarded(bystander: Bystander) -> Iterator[NodeProcess]:
    """Node bob, the target; afterwards it still serves a legitimate client correctly."""
    yield bystander.proc
    bystander.check()


def _assert_refused(answer: tuple[Any, int | None], why: str) -> None:
    reply, close_code = answer
    assert isinstance(reply, ErrorReply), reply
    assert reply.code == "UNAUTHENTICATED" and why in reply.message, reply
    assert close_code == POLICY_VIOLATION


def test_replayed_node_hello_is_refused(bob_guarded: NodeProcess, alice: NodeProcess) -> None:
    """Replaying node alice's hello captured from one connection on a second one -> UNAUTHENTICATED, close 1008."""
    bob = bob_guarded
    captured = node_hello(stolen_identity(alice), "alice", bob.fingerprint)

    async def run() -> tuple[Any, tuple[Any, int | None], tuple[Any, int | None]]:
        original = await Raw.open(bob, captured)
        while_open = await refused_hello(bob, captured)
        await original.close()
        after_close = await refused_hello(bob, captured)
        return original.greeting, while_open, after_close

    greeting, while_open, after_close = asyncio.run(run())
    assert isinstance(greeting, HelloReply) and greeting.principal.startswith("node:alice@")
    _assert_refused(while_open, "replay")
    _assert_refused(after_close, "replay")


def test_proof_for_one_node_is_refused_by_another(
    bob_guarded: NodeProcess, alice: NodeProcess, shared_node: NodeProcess
) -> None:
    """A node proof made for node A (shared) presented to node B (bob) -> UNAUTHENTICATED; A still accepts it."""
    bob = bob_guarded
    for_shared = node_hello(stolen_identity(alice), "alice", shared_node.fingerprint)

    async def run() -> tuple[tuple[Any, int | None], Any]:
        at_bob = await refused_hello(bob, for_shared)
        at_shared = await Raw.open(shared_node, for_shared)
        await at_shared.close()
        return at_bob, at_shared.greeting

    at_bob, at_shared = asyncio.run(run())
    _assert_refused(at_bob, "does not verify")
    assert isinstance(at_shared, HelloReply) and at_shared.principal.startswith("node:alice@")


async def _capture_hello_from(alice: NodeProcess, trap: Identity) -> bytes:
    """Run a malicious 'node' with its own certificate; ask the real alice to deliver to it; keep her hello."""
    captured: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        first = await ws.recv()
        if not captured.done():
            captured.set_result(bytes(first) if not isinstance(first, str) else first.encode())
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, ssl=server_ssl_context(trap), compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        attacker = await Raw.open(alice)
        own = new_id()
        await attacker.exchange([PutRequest(2, own, torch.ones(1))])
        answer = await attacker.request(TransferRequest(
            3, own, "trap", f"wss://127.0.0.1:{port}", trap.fingerprint, new_id(), secrets.token_bytes(32), False,
        ))
        await attacker.close()
        assert isinstance(answer, ErrorReply), answer  # the trap never acknowledges
        return await asyncio.wait_for(captured, 10)


def test_relayed_hello_from_a_malicious_node_is_refused(
    bob_guarded: NodeProcess, alice: NodeProcess, identities: Callable[[str], Identity]
) -> None:
    """A malicious node relays the real alice's hello (sent to it during a transfer) to bob -> UNAUTHENTICATED."""
    bob = bob_guarded

    async def run() -> tuple[bytes, tuple[Any, int | None]]:
        captured = await _capture_hello_from(alice, identities("trap"))
        return captured, await refused_hello(bob, captured)

    captured, relayed = asyncio.run(run())
    message = decode_message(captured)
    assert isinstance(message, HelloRequest) and message.credentials["scheme"] == "node"
    assert message.credentials["node_id"] == "alice"
    _assert_refused(relayed, "does not verify")


@pytest.mark.parametrize("skew", [-400, 400], ids=["stale", "future"])
def test_proof_outside_the_clock_window_is_refused(bob_guarded: NodeProcess, alice: NodeProcess, skew: int) -> None:
    """A genuine proof timestamped more than 300 s away (a stored old capture, or pre-made) -> UNAUTHENTICATED."""
    bob = bob_guarded
    old = node_hello(stolen_identity(alice), "alice", bob.fingerprint, now=time.time() + skew)
    _assert_refused(asyncio.run(refused_hello(bob, old)), "check the clocks")


def test_forged_proof_with_a_stolen_certificate_is_refused(
    bob_guarded: NodeProcess, alice: NodeProcess, identities: Callable[[str], Identity]
) -> None:
    """alice's public certificate with a signature from the attacker's key -> UNAUTHENTICATED."""
    bob = bob_guarded
    forged = node_credentials(identities("mallory"), "alice", bob.fingerprint)
    forged["certificate"] = stolen_identity(alice).cert_der
    _assert_refused(asyncio.run(refused_hello(bob, hello(forged, "alice"))), "does not verify")


@pytest.mark.parametrize("field", ["node_id", "timestamp", "nonce"])
def test_tampered_proof_is_refused(bob_guarded: NodeProcess, alice: NodeProcess, field: str) -> None:
    """A genuine proof with node_id, timestamp or nonce altered (to dodge the replay cache) -> UNAUTHENTICATED."""
    bob = bob_guarded
    credentials = node_credentials(stolen_identity(alice), "alice", bob.fingerprint)
    credentials[field] = {"node_id": "bob", "timestamp": credentials["timestamp"] - 1,
                          "nonce": secrets.token_bytes(16)}[field]
    _assert_refused(asyncio.run(refused_hello(bob, hello(credentials, "alice"))), "does not verify")


def test_proof_bound_to_insecure_is_refused_by_a_tls_node(bob_guarded: NodeProcess, alice: NodeProcess) -> None:
    """A proof made for a plaintext server ('insecure' binding) presented over TLS -> UNAUTHENTICATED."""
    bob = bob_guarded
    downgraded = node_hello(stolen_identity(alice), "alice", None)
    _assert_refused(asyncio.run(refused_hello(bob, downgraded)), "does not verify")


def test_second_hello_cannot_switch_identity(bob_guarded: NodeProcess, alice: NodeProcess) -> None:
    """After a user's hello, a (valid) node hello on the same connection -> BAD_REQUEST, close 1008."""
    bob = bob_guarded

    async def run() -> tuple[Any, list[Any]]:
        raw = await Raw.open(bob)
        replies = await raw.exchange([node_hello(stolen_identity(alice), "alice", bob.fingerprint)])
        await raw.close()
        return raw.greeting, replies

    greeting, replies = asyncio.run(run())
    assert isinstance(greeting, HelloReply) and greeting.principal.startswith("user:")
    assert codes(replies) == ["BAD_REQUEST"]
    assert replies[-1].rcvd is not None and replies[-1].rcvd.code == POLICY_VIOLATION


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"scheme": "admin"},
        {"scheme": "token", "token": "x" * 32},
        {"scheme": "node"},
        {"scheme": "anonymous"},
        {"scheme": "anonymous", "secret": b"short"},
        {"scheme": "anonymous", "secret": "a str, not bytes, 32 characters"},
        {"scheme": ["anonymous"]},
    ],
    ids=repr,
)
def test_bad_credentials_are_unauthenticated(bob_guarded: NodeProcess, credentials: dict[str, Any]) -> None:
    """Missing/unknown schemes, empty node proofs and malformed anonymous secrets -> UNAUTHENTICATED, close 1008."""
    reply, close_code = asyncio.run(refused_hello(bob_guarded, hello(credentials)))
    assert isinstance(reply, ErrorReply) and reply.code == "UNAUTHENTICATED"
    assert close_code == POLICY_VIOLATION


def test_requests_before_hello_are_unauthenticated(bob_guarded: NodeProcess, bystander: Bystander) -> None:
    """Skipping the handshake (get of a known id, list) -> UNAUTHENTICATED, close 1008, nothing returned."""

    async def run() -> list[Any]:
        found = []
        for request in (GetRequest(5, bystander.kept.object_id), ListRequest(6)):
            raw = await Raw.open(bob_guarded, say_hello=False)
            found.extend(await raw.exchange([request]))
            await raw.close()
        return found

    replies = asyncio.run(run())
    assert codes(replies) == ["UNAUTHENTICATED", "UNAUTHENTICATED"]
    closes = [r for r in replies if not isinstance(r, ErrorReply)]
    assert [c.rcvd.code for c in closes] == [POLICY_VIOLATION, POLICY_VIOLATION]


def test_principal_follows_the_token_never_the_client_name(bob_guarded: NodeProcess) -> None:
    """Control: the same token is the same user:<name> whatever the client calls itself; another token another user."""
    token, other_token = admit_user(bob_guarded), admit_user(bob_guarded)

    async def run() -> list[Any]:
        greetings = []
        for used, name in ((token, "a"), (token, "b"), (other_token, "a")):
            raw = await Raw.open(bob_guarded, as_user(used, bob_guarded, client=name))
            greetings.append(raw.greeting.principal)
            await raw.close()
        return greetings

    first, same, other = asyncio.run(run())
    assert first == same == "user:" + token.split(".")[1] and first != other


def test_anonymous_client_is_refused_and_disconnected(bob_guarded: NodeProcess) -> None:
    """An anonymous hello (no token) on a default node -> UNAUTHENTICATED naming the fix, then close 1008."""
    _assert_refused(asyncio.run(refused_hello(bob_guarded, hello(anonymous()))), "user token")


def test_wrong_or_unknown_token_is_refused(bob_guarded: NodeProcess) -> None:
    """A token never admitted, or an admitted user's name with another secret -> the same UNAUTHENTICATED."""
    real = parse_user_token(admit_user(bob_guarded))
    forged = new_user_token(real.user)
    for token in (new_user_token("nobody"), forged):
        credentials = user_credentials(token, bob_guarded.fingerprint)
        _assert_refused(asyncio.run(refused_hello(bob_guarded, hello(credentials))), "unknown user or wrong token")


def test_replayed_user_hello_is_refused(bob_guarded: NodeProcess) -> None:
    """A captured user hello replayed on a new connection -> UNAUTHENTICATED (nonce already used)."""
    captured = as_user(admit_user(bob_guarded), bob_guarded)

    async def run() -> Any:
        first = await Raw.open(bob_guarded, captured)
        await first.close()
        return first.greeting, await refused_hello(bob_guarded, captured)

    greeting, replay = asyncio.run(run())
    assert isinstance(greeting, HelloReply)
    _assert_refused(replay, "replay")


def test_user_hello_made_for_another_node_is_refused(bob_guarded: NodeProcess, shared_node: NodeProcess) -> None:
    """A user's hello made for node A (a MAC over A's fingerprint) relayed to node B by A -> UNAUTHENTICATED."""
    token = admit_user(bob_guarded, shared_node)
    relayed = hello(user_credentials(parse_user_token(token), shared_node.fingerprint))
    _assert_refused(asyncio.run(refused_hello(bob_guarded, relayed)), "unknown user or wrong token")


def test_revoked_user_is_refused_and_its_live_connection_closed(bob_guarded: NodeProcess) -> None:
    """`python -m node users revoke` while connected -> the connection closes (1008) and new hellos are refused."""
    token = admit_user(bob_guarded)
    user = parse_user_token(token).user

    async def run() -> tuple[Any, Any, Any]:
        live = await Raw.open(bob_guarded, as_user(token, bob_guarded))
        revoked = subprocess.run(
            [sys.executable, "-m", "node", "users", "revoke", user, "--state-dir", str(bob_guarded.state_dir)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert revoked.returncode == 0, revoked.stderr
        try:
            await asyncio.wait_for(live.ws.wait_closed(), 10)
        finally:
            code = live.ws.close_code
        return live.greeting, code, await refused_hello(bob_guarded, as_user(token, bob_guarded))

    greeting, close_code, again = asyncio.run(run())
    assert isinstance(greeting, HelloReply) and close_code == POLICY_VIOLATION
    _assert_refused(again, "unknown user or wrong token")


def test_node_proof_without_network_membership_is_refused(
    bob_guarded: NodeProcess, identities: Callable[[str], Identity]
) -> None:
    """A genuine key pair's proof without the network token's MAC, or with another network's -> UNAUTHENTICATED."""
    outsider = identities("outsider")
    for network in (None, network_key(new_network_token())):
        greeting = node_hello(outsider, "outsider", bob_guarded.fingerprint, network=network)
        _assert_refused(asyncio.run(refused_hello(bob_guarded, greeting)), "membership")


def test_client_name_cannot_forge_log_lines(bob_guarded: NodeProcess) -> None:
    """A client name carrying '\\n' plus a fake log record -> the node's log keeps it on one escaped line."""
    token = secrets.token_hex(8)
    forged = f"2020-01-01 00:00:00,000 INFO tessera.node.session: {token} connected from 10.0.0.1 as node:alice"

    async def run() -> Any:
        raw = await Raw.open(bob_guarded, as_user(admit_user(bob_guarded), bob_guarded, client="x\n" + forged))
        await raw.close()
        return raw.greeting

    assert isinstance(asyncio.run(run()), HelloReply)
    time.sleep(0.2)  # let the node flush its log line
    lines = bob_guarded.stderr().splitlines()
    assert any(token in line for line in lines), "the hello was not logged at all"
    assert not any(line.startswith(forged[:40]) and token in line for line in lines), (
        "a forged log line appears in the node's log"
    )
