"""Shared fixtures: real node processes on 127.0.0.1, port 0, over TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support import GatewayProcess, NodeProcess, start_gateway, start_node


@pytest.fixture
def spawn_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Factory for node processes, all stopped (and checked) at teardown."""
    started: list[NodeProcess] = []

    def spawn(node_id: str = "alice", *args: str, **kwargs: object) -> NodeProcess:
        proc = start_node(tmp_path, node_id, *args, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.stop()


@pytest.fixture
def alice_process(spawn_node: Callable[..., NodeProcess]) -> NodeProcess:
    return spawn_node("alice")


@pytest.fixture(scope="session")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node process shared by the tests that only need a healthy node."""
    proc = start_node(tmp_path_factory.mktemp("shared"), "shared")
    yield proc
    assert proc.stop() == 0, proc.stderr()


@pytest.fixture
def spawn_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory for gateway processes, all stopped at teardown."""
    started: list[GatewayProcess] = []

    def spawn(*args: str, **kwargs: object) -> GatewayProcess:
        proc = start_gateway(tmp_path, *args, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway process shared by the tests that only need a healthy gateway."""
    proc = start_gateway(tmp_path_factory.mktemp("shared-gateway"))
    yield proc
    assert proc.stop() == 0, proc.stderr()
