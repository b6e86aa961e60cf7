"""Heavy work runs off the event loop, ordering holds per connection, async API works."""

from __future__ import annotations

import asyncio
import threading
import time

import torch

import node
from tests.support import NodeProcess


def test_long_matmul_does_not_stall_other_clients(shared_node: NodeProcess) -> None:
    """While one client's big matmuls run, another client's small commands complete."""
    heavy = node.connect(shared_node.url, cafile=shared_node.cafile)
    light = node.connect(shared_node.url, cafile=shared_node.cafile)
    try:
        m = heavy.send(torch.randn(1024, 1024))
        heavy.sync()
        for _ in range(12):  # roughly a second or more of matmul on two cores
            m = (m @ m) / 1024
        done = threading.Event()
        finished_at: list[float] = []

        def finish_heavy() -> None:
            heavy.sync()
            finished_at.append(time.monotonic())
            done.set()

        worker = threading.Thread(target=finish_heavy)
        worker.start()
        x = light.send(torch.tensor([1.0]))
        light_done = []
        for _ in range(5):
            assert torch.equal((x + 1).get(), torch.tensor([2.0]))
            light_done.append(time.monotonic())
        worker.join(timeout=120)
        assert done.is_set()
        # The small round trips finished before the heavy queue drained.
        assert light_done[-1] < finished_at[0]
    finally:
        heavy.close()
        light.close()


def test_per_connection_order_is_preserved(shared_node: NodeProcess) -> None:
    """A chain of 500 dependent pipelined commands yields the sequential result."""
    with node.connect(shared_node.url, cafile=shared_node.cafile) as remote:
        x = remote.send(torch.zeros(3))
        for _ in range(500):
            x = x + 1
        assert torch.equal(x.get(), torch.full((3,), 500.0))


def test_async_client(shared_node: NodeProcess) -> None:
    """connect_async: ops are expressions, get/sync/objects are awaited."""

    async def run() -> torch.Tensor:
        remote = await node.connect_async(shared_node.url, cafile=shared_node.cafile)
        async with remote:
            x = remote.send(torch.tensor([1, 2]))
            y = remote.send(torch.tensor([3, 4]))
            z = x + y
            await remote.sync()
            info = await remote.describe(z)
            assert info.shape == (2,)
            assert z.object_id in {i.object_id for i in await remote.objects()}
            return await z.get()

    assert torch.equal(asyncio.run(run()), torch.tensor([4, 6]))


def test_reconnect_on_next_use_keeps_objects(shared_node: NodeProcess) -> None:
    """After the connection drops, the next call reconnects as the same principal."""
    with node.connect(shared_node.url, cafile=shared_node.cafile) as remote:
        x = remote.send(torch.tensor([7]))
        remote.sync()
        remote._channel._connection.close()  # drop the connection under the client
        time.sleep(0.2)
        assert torch.equal(x.get(), torch.tensor([7]))
