"""``python -m tests.integration.recording_node ...``: a node that records what its links receive.

Test-only: runs ``python -m node`` unchanged, except that every frame an
outgoing node-to-node link (:class:`~peer.client.async_channel.AsyncChannel`)
receives is appended, length-prefixed, to the file named by
``TESSERA_TEST_FRAMES``, so a test can check what a trainer node was sent.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

from node.__main__ import main
from peer.client.async_channel import AsyncChannel

_original = AsyncChannel.frame_received


def _recording(self: AsyncChannel, data: Any) -> None:
    raw = bytes(data)
    with open(os.environ["TESSERA_TEST_FRAMES"], "ab") as out:
        out.write(struct.pack(">Q", len(raw)) + raw)
    _original(self, data)


def read_frames(path: str) -> list[bytes]:
    """The frames recorded in ``path``, in arrival order."""
    frames: list[bytes] = []
    if not os.path.exists(path):
        return frames
    data = open(path, "rb").read()
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from(">Q", data, offset)
        frames.append(data[offset + 8 : offset + 8 + size])
        offset += 8 + size
    return frames


if __name__ == "__main__":
    AsyncChannel.frame_received = _recording  # type: ignore[method-assign]
    main(sys.argv[1:])
