"""protocol/ without torch: importing and using the codec loads torch only for a tensor.

Each check runs in a fresh interpreter, since the test process has torch
loaded already.  A process that never meets a tensor (the gateway) must
never import it, and the decoder's no-tensor mode must keep it so whatever
a peer sends.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import struct, sys
import msgpack
from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import TensorRefused
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import SyncRequest, CommandRequest
from protocol.values import PointerRef

def frame(body):
    raw = msgpack.packb(body, use_bin_type=True)
    return struct.pack("<I", len(raw)) + raw

def ext(code, data):
    return msgpack.ExtType(code, data)
"""


def torch_loaded_after(code: str) -> bool:
    """Run ``code`` after PRELUDE in a fresh interpreter; whether torch ended up imported."""
    script = PRELUDE + code + "\nprint('torch' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_importing_the_protocol_does_not_load_torch() -> None:
    """Every protocol module but tensors imports without torch."""
    modules = sorted(p.stem for p in (ROOT / "protocol").glob("*.py") if p.stem not in ("tensors", "__init__"))
    assert not torch_loaded_after("import protocol\n" + "".join(f"import protocol.{m}\n" for m in modules))


def test_encoding_and_decoding_without_tensors_does_not_load_torch() -> None:
    """Messages without tensors (pointers, slices, ellipsis included) round-trip without torch."""
    assert not torch_loaded_after(
        "m = CommandRequest(RequestId(3), 'getitem', PointerRef(NodeId('a'), ObjectId(1)),"
        " ([slice(1, None), Ellipsis],), {}, (ObjectId(2),))\n"
        "assert decode_message(encode_message_bytes(m)) == m\n"
        "assert decode_message(encode_message_bytes(SyncRequest(RequestId(1)))).id == 1\n"
    )


@pytest.mark.parametrize(
    "value",
    ["ext(1, msgpack.packb(['float32', [2], 0, 8]))", "ext(5, b'float32')"],
    ids=["tensor", "dtype"],
)
def test_the_no_tensor_decoder_refuses_torch_values_without_loading_torch(value: str) -> None:
    """With tensors=False a tensor or dtype ext is TensorRefused, with the id, and torch stays out."""
    assert not torch_loaded_after(
        f"data = frame({{'v': 1, 'kind': 'command', 'id': 6, 'op': 'add', 'target': None,"
        f" 'args': [{value}], 'kwargs': {{}}, 'results': [9]}}) + bytes(16)\n"
        "try:\n"
        "    decode_message(data, tensors=False)\n"
        "except TensorRefused as exc:\n"
        "    assert exc.request_id == 6 and exc.code.value == 'BAD_REQUEST'\n"
        "else:\n"
        "    raise AssertionError('decoded')\n"
    )


def test_the_first_tensor_loads_torch() -> None:
    """The default decoder builds tensors: meeting one imports torch (control for the tests above)."""
    assert torch_loaded_after(
        "data = frame({'v': 1, 'kind': 'put', 'id': 2, 'object_id': 7,"
        " 'value': ext(1, msgpack.packb(['int32', [2], 0, 8]))})\n"
        "data += bytes(-len(data) % 8) + struct.pack('<ii', 1, 2)\n"
        "assert decode_message(data).value.tolist() == [1, 2]\n"
    )
