"""A TLS WebSocket server that poses as a node: it accepts any hello and records what it is sent.

It stands for a machine an attacker controls: a valid key pair and
self-signed certificate, speaking our protocol, but without the network
token.  ``welcome`` decides what its ``hello_reply`` carries for the
membership proof: nothing, or a MAC under a key of the attacker's choosing.
Tests check that no payload (``deliver``, ``mpc_material``, ``mpc_open``,
``secagg_share``, ``train``) ever reaches it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from peer.security.identity import ensure_identity
from peer.security.proof import welcome_mac
from peer.transport.tls import server_ssl_context
from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import ProtocolError
from protocol.messages import DeliverRequest, HelloReply, HelloRequest

PAYLOAD_KINDS = frozenset({"deliver", "mpc_material", "mpc_open", "secagg_share", "train", "secagg_split"})


class Impostor:
    """A fake node on 127.0.0.1 in a thread of its own; ``kinds`` lists what it received."""

    def __init__(self, state: Path, node_id: str, welcome_key: bytes | None = None) -> None:
        self.node_id = node_id
        self.identity = ensure_identity(state, node_id)
        self.fingerprint = self.identity.fingerprint
        self.welcome_key = welcome_key
        self.kinds: list[str] = []
        self.messages: list[Any] = []
        """Every message received, decoded (what a hostile member would keep)."""
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("impostor did not start")

    @property
    def payloads(self) -> list[str]:
        """Kinds received that carry data (anything but the hello)."""
        return [k for k in self.kinds if k in PAYLOAD_KINDS]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        ssl_context = server_ssl_context(self.identity)
        async with serve(self._handle, "127.0.0.1", 0, ssl=ssl_context, compression=None, max_size=2**28) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"wss://127.0.0.1:{port}"
            self._ready.set()
            await self._stop

    async def _handle(self, ws: ServerConnection) -> None:
        async for frame in ws:
            if isinstance(frame, str):
                continue
            try:
                message: Any = decode_message(frame)
            except ProtocolError:
                self.kinds.append("undecodable")
                continue
            self.kinds.append(message.KIND.value)
            self.messages.append(message)
            if isinstance(message, HelloRequest):
                await ws.send(encode_message_bytes(self._reply(message)))
            elif isinstance(message, DeliverRequest) and message.last:
                await ws.send(encode_message_bytes(message.ack()))  # as a real destination would

    def _reply(self, hello: HelloRequest) -> HelloReply:
        membership = None
        nonce = hello.credentials.get("nonce")
        if self.welcome_key is not None and isinstance(nonce, bytes):
            membership = welcome_mac(self.welcome_key, self.node_id, self.fingerprint, nonce)
        principal = f"node:{hello.client}"
        return hello.reply(self.node_id, principal, ("node",), 2**28, membership)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)
