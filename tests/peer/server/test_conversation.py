"""The shared server conversation: who is blamed for an error, and the no-tensor option."""

from __future__ import annotations

from typing import Any

import torch

from peer.server.auth import AnonymousAuthenticator
from peer.server.conversation import Conversation, Outcome
from protocol.codec import decode_message, encode_message, encode_message_bytes
from protocol.errors import BadRequest, TesseraError
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    ErrorReply, GetReply, HelloReply, HelloRequest, Message, MessageKind, PutRequest, SyncRequest,
)


class Echo(Conversation):
    """Serves ``sync`` by encoding a reply holding a complex tensor (which the wire cannot carry)."""

    def __init__(self, tensors: bool = True) -> None:
        super().__init__(NodeId("n"), (), AnonymousAuthenticator(), 1 << 20, "peer", tensors=tensors)
        self.handlers = {MessageKind.SYNC: self._sync, MessageKind.PUT: lambda request: Outcome()}

    def _sync(self, request: SyncRequest) -> Outcome:
        encode_message(GetReply(request.id, torch.zeros(2, dtype=torch.complex64)))
        raise AssertionError("encoded a complex tensor")

    def not_served(self, message: Message) -> TesseraError:
        return BadRequest("not served", {})


def opened(conversation: Conversation) -> Conversation:
    hello = HelloRequest(RequestId(1), PROTOCOL_VERSION, "t", (), {"scheme": "anonymous", "secret": b"s" * 32})
    assert isinstance(conversation.receive(encode_message_bytes(hello)).reply, HelloReply)
    return conversation


def reply_to(conversation: Conversation, message: Message) -> Any:
    outcome = conversation.receive(encode_message_bytes(message))
    return decode_message(encode_message_bytes(outcome.reply)) if outcome.reply is not None else None


def test_a_local_encoding_error_is_answered_internal_not_as_the_callers_fault() -> None:
    """A handler that fails to encode its own message answers a bare INTERNAL, no BAD_TENSOR or BAD_MESSAGE."""
    reply = reply_to(opened(Echo()), SyncRequest(RequestId(5)))
    assert isinstance(reply, ErrorReply)
    assert (reply.id, reply.code, reply.message, dict(reply.details)) == (5, "INTERNAL", "internal error", {})


def test_the_no_tensor_option_refuses_tensors_and_keeps_serving() -> None:
    """tensors=False: a put is BAD_REQUEST from the decoder, with its id; the connection goes on."""
    conversation = opened(Echo(tensors=False))
    reply = reply_to(conversation, PutRequest(RequestId(6), ObjectId(1), torch.ones(2)))
    assert isinstance(reply, ErrorReply) and (reply.id, reply.code) == (6, "BAD_REQUEST")
    assert reply_to(opened(Echo()), PutRequest(RequestId(7), ObjectId(1), torch.ones(2))) is None
