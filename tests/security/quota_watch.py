"""Memory figures of a node process for the quota attacks: peak resident memory against a bound.

``VmHWM`` (peak resident set) is read from ``/proc/<pid>/status``: the node
keeps freed heap memory for reuse (``node.allocator``), so its resident set
only grows, and the peak is what an attack managed to make it hold at once.
Linux only, like the attacks that use it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.security.attack_wire import Raw
from tests.security.conftest import Bystander
from tests.support import NodeProcess

MiB = 1024 * 1024
QUOTA_MIB = 32
SLACK = 28 * MiB
"""Room for what no quota counts: the messages being read on each connection (websockets joins
and unmasks them: a few copies), TLS buffers, replies, allocator rounding and fragmentation."""


def memory(proc: NodeProcess) -> tuple[int, int]:
    """The node's resident and peak resident memory, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


class Watch:
    """A bystander on the node, and its memory before the attack."""

    def __init__(self, proc: NodeProcess, name: str) -> None:
        self.proc, self.name = proc, name
        self.bystander = Bystander(proc)
        self.before = memory(proc)[0]

    def check(self, largest_message: int) -> None:
        """Bystander served; peak memory within before + quota + one message + SLACK (printed)."""
        self.bystander.check()
        rss, peak = memory(self.proc)
        bound = self.before + QUOTA_MIB * MiB + largest_message + SLACK
        print(
            f"\nRSS {self.name}: before {self.before / MiB:.1f} MiB, after {rss / MiB:.1f} MiB, "
            f"peak {peak / MiB:.1f} MiB (+{(peak - self.before) / MiB:.1f}), bound {bound / MiB:.1f} MiB"
        )
        assert peak <= bound, f"the node held {(peak - self.before) / MiB:.0f} MiB for one 32 MiB user"
        self.bystander.close()


async def drained(proc: NodeProcess, raws: list[Raw], deadline: float = 60.0) -> None:
    """Until the node has read every byte ``raws`` sent: both kernel queues of each
    connection are empty (``/proc/net/tcp``), a condition rather than a guess at a delay."""
    ports = {raw.ws.transport.get_extra_info("sockname")[1] for raw in raws}
    node_side = {(proc.port, port) for port in ports}
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        pending = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
                tx, rx = (int(x, 16) for x in fields[4].split(":"))
                if (local, remote) in node_side:
                    pending += rx  # sent to the node, not yet read by it
                elif local in ports and remote == proc.port:
                    pending += tx  # not yet acknowledged by the node's kernel
        if pending == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the node did not read what was sent")
