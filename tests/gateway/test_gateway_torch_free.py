"""A real gateway process never imports torch, whatever its peers send.

The gateway runs with ``PYTHONPROFILEIMPORTTIME=1``: the interpreter then
logs every module it imports, when it imports it, to stderr, so the log of a
whole run (start-up, a node's hello and registration, a search, the status
page, and frames carrying a tensor and a dtype value) shows whether torch was
ever loaded.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import msgpack
import pytest

from peer.security.identity import ensure_identity
from protocol.codec import ExtCode
from protocol.messages import ErrorReply, NodesReply, NodesRequest, RegisterReply, RegisterRequest
from tests.gateway.gateway_wire import Wire, https_get, record_for
from tests.support import start_gateway

IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def _frame(body: dict[str, object]) -> bytes:
    raw = msgpack.packb(body, use_bin_type=True)
    head = struct.pack("<I", len(raw)) + raw
    return head + bytes(-len(head) % 8) + struct.pack("<ff", 1.0, 2.0)


TENSOR = msgpack.ExtType(ExtCode.TENSOR, msgpack.packb(["float32", [2], 0, 8]))
DTYPE = msgpack.ExtType(ExtCode.DTYPE, b"float64")


async def test_a_gateway_process_never_imports_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving hellos, a registration, a search, the status page and tensor-carrying frames loads no torch."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    gateway = start_gateway(tmp_path)
    try:
        identity = ensure_identity(tmp_path / "alice", "alice")
        node = await Wire.open(gateway, identity, "alice")
        assert isinstance(await node.request(RegisterRequest(node.rid(), record_for(identity, "alice"))), RegisterReply)
        client = await Wire.open(gateway)
        assert isinstance(await client.request(NodesRequest(client.rid())), NodesReply)
        for rid, value in ((40, TENSOR), (41, DTYPE)):
            await client.ws.send(_frame({"v": 1, "kind": "put", "id": rid, "object_id": 7, "value": value}))
            refusal = await client.receive()
            assert isinstance(refusal, ErrorReply) and (refusal.id, refusal.code) == (rid, "BAD_REQUEST")
        assert isinstance(await client.request(NodesRequest(client.rid())), NodesReply)
        assert https_get(gateway, "/")[0] == 200
        await client.close()
        await node.close()
    finally:
        assert gateway.stop() == 0, gateway.stderr()
    imported = IMPORTED.findall(gateway.stderr())
    assert "gateway.server" in imported and "protocol.codec" in imported  # the log is the real one
    assert not [name for name in imported if name == "torch" or name.startswith("torch.")]
