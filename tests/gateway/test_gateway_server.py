"""GatewayServer and the bindings file: saved bindings survive a restart, operator edits are adopted.

In-process servers on 127.0.0.1 port 0 with real files; registrations go
through the registry (the wire path is the process tests' and the attack
suite's).  The sweeper is set to an hour so that only explicit
``sync_bindings`` calls touch the file: nothing here depends on timing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest

from gateway.bindings import BINDINGS_FILE, Binding, BindingFile
from gateway.server import GatewayServer
from gateway.settings import GatewaySettings
from peer.security.identity import StateDirError
from protocol.errors import NotFound, PermissionDenied
from protocol.ids import NodeId
from protocol.records import NodeRecord, Role
from tests.support import NETWORK_TOKEN

ALICE = NodeId("alice")
FP_A = "sha256:" + "a" * 64
FP_X = "sha256:" + "c" * 64

Start = Callable[[], Awaitable[GatewayServer]]


def record(fingerprint: str = FP_A) -> NodeRecord:
    return NodeRecord(ALICE, "wss://127.0.0.1:8765", fingerprint, (Role.COMPUTE,))


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start gateways on one state dir (one after another, like restarts); all closed at the end."""
    started: list[GatewayServer] = []

    async def go() -> GatewayServer:
        settings = GatewaySettings(
            tmp_path / "gateway", port=0, heartbeat_interval=3600.0, network_token=NETWORK_TOKEN
        )
        server = GatewayServer(settings)
        await server.start()
        started.append(server)
        return server

    yield go
    for server in started:
        await server.close()


async def test_binding_survives_a_restart(start: Start) -> None:
    """alice's first registration is saved (0600); a restarted gateway refuses her id to another key."""
    first = await start()
    now = first.clock()
    first.registry.register(ALICE, FP_A, record(), now)
    await first.sync_bindings()
    assert first.registry.unsaved_bindings() == {}
    assert BindingFile(first.settings.state_dir).load() == {ALICE: Binding(FP_A, now)}
    await first.close()

    second = await start()
    assert ALICE not in second.registry  # entries are soft
    with pytest.raises(PermissionDenied, match="'alice' is bound to another certificate"):
        second.registry.register(ALICE, FP_X, record(FP_X), second.clock())
    second.registry.register(ALICE, FP_A, record(), second.clock())
    assert second.registry.binding(ALICE) == Binding(FP_A, now)


async def test_corrupt_bindings_file_stops_the_start(start: Start, tmp_path: Path) -> None:
    """A damaged bindings.json is a one-line StateDirError before the gateway listens."""
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / BINDINGS_FILE).write_text('{"version": 1, "bindings": {"alice": "x"}}')
    with pytest.raises(StateDirError, match="bindings.json is corrupt") as failed:
        await start()
    assert "\n" not in str(failed.value)


@pytest.mark.parametrize("edit", ["rebind", "remove"])
async def test_operator_edit_is_adopted_by_the_running_gateway(start: Start, edit: str) -> None:
    """After the operator rebinds or removes alice in the file, the next reread drops her entry and the new rule holds."""
    server = await start()
    server.registry.register(ALICE, FP_A, record(), server.clock())
    await server.sync_bindings()
    operator = BindingFile(server.settings.state_dir)
    if edit == "rebind":
        operator.edit(lambda table: table.__setitem__(ALICE, Binding(FP_X, server.clock())))
    else:
        operator.edit(lambda table: table.pop(ALICE))
    await server.sync_bindings(reread=True)
    assert ALICE not in server.registry
    with pytest.raises(PermissionDenied if edit == "rebind" else NotFound):
        server.registry.heartbeat(ALICE, FP_A, server.clock())
    server.registry.register(ALICE, FP_X, record(FP_X), server.clock())
    assert ALICE in server.registry


async def test_unwritable_file_keeps_the_binding_in_force(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """If bindings.json cannot be written, the binding holds in memory, the error is logged, and a later sync saves it."""
    server = await start()
    path = server.binding_file.path
    path.mkdir()  # a directory where the file should be: reads and writes fail
    server.registry.register(ALICE, FP_A, record(), server.clock())
    with caplog.at_level(logging.ERROR, "tessera.gateway"):
        await server.sync_bindings()
    assert "id bindings:" in caplog.text and "bindings.json" in caplog.text
    assert ALICE in server.registry.unsaved_bindings()
    with pytest.raises(PermissionDenied):
        server.registry.register(ALICE, FP_X, record(FP_X), server.clock())
    shutil.rmtree(path)
    await server.sync_bindings(reread=True)
    assert server.registry.unsaved_bindings() == {} and ALICE in BindingFile(path.parent).load()
