"""What a node's session adds to one small message, against decoding it alone.

    python -m benchmarks.dispatch [--frames 200000] [--json PATH]

Feeds the same ``sync`` frame to a real :class:`~node.server.session.Session`
(codec, hello gate, handler table, the redaction point's per-request
exposure) and, as the baseline in the same process, to the codec's
``decode_message`` alone.  Prints microseconds per frame for both and their
ratio, and writes them as JSON: the per-message cost of the session layer,
which every command, get and reply pays before any tensor work.
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

from peer.server.auth import AnonymousAuthenticator
from node.server.executor import Executor
from node.server.session import Session
from node.server.store import MemoryStore
from protocol.codec import decode_message, encode_message_bytes
from protocol.ids import NodeId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import HelloRequest, SyncRequest

REPEATS = 5


def measure(frames: int) -> dict[str, float]:
    store = MemoryStore()
    session = Session(NodeId("bench"), ("node",), Executor(NodeId("bench"), store), store,
                      AnonymousAuthenticator(), 1 << 26)
    hello = HelloRequest(RequestId(1), PROTOCOL_VERSION, "bench", ("client",),
                         {"scheme": "anonymous", "secret": b"b" * 32})
    session.receive(encode_message_bytes(hello))
    frame = encode_message_bytes(SyncRequest(RequestId(2)))
    decode = min(timeit.repeat(lambda: decode_message(frame), number=frames, repeat=REPEATS)) / frames
    dispatch = min(timeit.repeat(lambda: session.receive(frame), number=frames, repeat=REPEATS)) / frames
    return {"decode_us": decode * 1e6, "session_us": dispatch * 1e6, "ratio": dispatch / decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--json", type=Path, default=Path("artifacts/dispatch.json"))
    args = parser.parse_args()
    result = measure(args.frames)
    print(f"decode only      {result['decode_us']:.2f} us per frame")
    print(f"session receive  {result['session_us']:.2f} us per frame ({result['ratio']:.2f}x decode)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
