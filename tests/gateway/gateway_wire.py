"""A raw wss client for gateway processes: websockets plus our codec, nothing of the node client."""

from __future__ import annotations

import http.client
import secrets
import ssl
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from peer.security.identity import Identity
from peer.security.proof import node_credentials
from protocol.codec import decode_message, encode_message_bytes
from protocol.ids import NodeId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import HelloReply, HelloRequest, Message
from protocol.records import NodeRecord, Role
from tests.support import NETWORK_KEY, GatewayProcess


def tls_context(gateway: GatewayProcess) -> ssl.SSLContext:
    """Verify the gateway against its own certificate (it is self-signed, so it is the CA)."""
    return ssl.create_default_context(cafile=str(gateway.cafile))


def record_for(identity: Identity, node_id: str, **kw: Any) -> NodeRecord:
    kw.setdefault("url", "wss://127.0.0.1:8765")
    kw.setdefault("roles", (Role.COMPUTE,))
    return NodeRecord(NodeId(node_id), fingerprint=identity.fingerprint, **kw)


class Wire:
    """One WebSocket to the gateway; ``request`` sends a message and returns the next reply."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next = 1

    @classmethod
    async def open(
        cls, gateway: GatewayProcess, identity: Identity | None = None, node_id: str = ""
    ) -> Wire:
        """Connect and say hello: as a node proving ``identity``, else anonymously."""
        ws = await connect(gateway.url, ssl=tls_context(gateway), compression=None, open_timeout=10)
        wire = cls(ws)
        if identity is not None:
            credentials = node_credentials(
                identity, node_id, gateway.fingerprint, network=NETWORK_KEY
            )
        else:
            credentials = {"scheme": "anonymous", "secret": secrets.token_bytes(32)}
        reply = await wire.request(HelloRequest(wire.rid(), PROTOCOL_VERSION, "tests", (), credentials))
        assert isinstance(reply, HelloReply), reply
        return wire

    def rid(self) -> RequestId:
        self._next += 1
        return RequestId(self._next)

    async def request(self, message: Message) -> Message:
        await self.ws.send(encode_message_bytes(message))
        return await self.receive()

    async def receive(self) -> Message:
        data = await self.ws.recv()
        assert isinstance(data, bytes)
        return decode_message(data)

    async def close(self) -> None:
        await self.ws.close()


def https_get(gateway: GatewayProcess, path: str) -> tuple[int, str, bytes]:
    """GET over HTTPS, verifying the gateway's certificate; (status, content type, body)."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", gateway.port, context=tls_context(gateway), timeout=10
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()
