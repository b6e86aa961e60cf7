"""Transport faults reach the user as typed Tessera errors, through both clients.

A scripted peer (:mod:`tests.integration.faulty_peer`, a separate process)
breaks in one way per test: a reset or silence during the TLS handshake, a
reset right after it, silence at the HTTP upgrade or at hello, and, once a connection is open, a
peer killed in the middle of a frame, a TCP reset, or a close without a
WebSocket close frame.  The synchronous (``node.connect``) and asyncio
(``node.connect_async``) clients must raise ``NodeUnavailable`` naming the
node's URL and what was being done, never an exception from websockets,
ssl, socket or asyncio.  No timing is asserted: the silent peers only need
the client's time-out (1 s here) to pass.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from websockets.exceptions import WebSocketException

import node
from tests.support import ROOT

LISTENING = re.compile(r"^faulty peer listening on (\d+) fingerprint (\S+)")

AT_OPEN = ("tls-reset", "tls-silent", "reset-after-tls", "upgrade-silent", "hello-silent")
"""Faults that make opening the connection fail."""

MID_SESSION = ("killed-mid-frame", "reset-mid-session", "no-close-frame")
"""Faults that break an open connection at the client's next request."""

ACTIONS = ("cannot reach", "handshake with", "connection to")
"""How the messages say what was being done: dialing, saying hello, using the connection."""

TIMEOUT = 1.0


@dataclass
class Peer:
    url: str
    fingerprint: str


@pytest.fixture
def faulty_peer(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Factory: a faulty peer process in the given mode, killed at teardown."""
    processes: list[subprocess.Popen[str]] = []

    def start(mode: str) -> Peer:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.faulty_peer", mode, str(tmp_path / mode)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )
        processes.append(process)
        assert process.stdout is not None
        match = LISTENING.match(process.stdout.readline())
        assert match, f"the faulty peer ({mode}) did not start"
        return Peer(f"wss://127.0.0.1:{match.group(1)}", match.group(2))

    yield start
    for process in processes:
        process.kill()
        process.wait()


def check(error: BaseException, peer: Peer) -> None:
    """A typed Tessera error naming the peer and the action; nothing from the transport."""
    assert type(error) is node.NodeUnavailable, f"{type(error).__module__}.{type(error).__name__}: {error}"
    assert not isinstance(error, (OSError, WebSocketException, asyncio.TimeoutError))
    message = str(error)
    assert peer.url in message, message
    assert any(action in message for action in ACTIONS), message


@pytest.mark.parametrize("mode", AT_OPEN)
def test_sync_client_open_faults(faulty_peer, mode: str) -> None:  # type: ignore[no-untyped-def]
    """node.connect against a peer failing at open raises NodeUnavailable naming it."""
    peer = faulty_peer(mode)
    with pytest.raises(node.NodeUnavailable) as raised:
        node.connect(peer.url, fingerprint=peer.fingerprint, timeout=TIMEOUT)
    check(raised.value, peer)


@pytest.mark.parametrize("mode", AT_OPEN)
async def test_async_client_open_faults(faulty_peer, mode: str) -> None:  # type: ignore[no-untyped-def]
    """node.connect_async against a peer failing at open raises NodeUnavailable naming it."""
    peer = faulty_peer(mode)
    with pytest.raises(node.NodeUnavailable) as raised:
        await node.connect_async(peer.url, fingerprint=peer.fingerprint, timeout=TIMEOUT)
    check(raised.value, peer)


@pytest.mark.parametrize("mode", MID_SESSION)
def test_sync_client_mid_session_faults(faulty_peer, mode: str) -> None:  # type: ignore[no-untyped-def]
    """A connection broken at the next request fails that request with NodeUnavailable."""
    peer = faulty_peer(mode)
    remote = node.connect(peer.url, fingerprint=peer.fingerprint, timeout=TIMEOUT)
    try:
        with pytest.raises(node.NodeUnavailable) as raised:
            remote.sync()
        check(raised.value, peer)
    finally:
        remote.close()


@pytest.mark.parametrize("mode", MID_SESSION)
async def test_async_client_mid_session_faults(faulty_peer, mode: str) -> None:  # type: ignore[no-untyped-def]
    """Same through the asyncio client: the awaited request raises NodeUnavailable."""
    peer = faulty_peer(mode)
    remote = await node.connect_async(peer.url, fingerprint=peer.fingerprint, timeout=TIMEOUT)
    try:
        with pytest.raises(node.NodeUnavailable) as raised:
            await remote.sync()
        check(raised.value, peer)
    finally:
        await remote.aclose()
