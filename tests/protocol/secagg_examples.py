"""One message of every secure-aggregation kind, shared by the codec and spec tests."""

from __future__ import annotations

import torch

from protocol.ids import NodeId, RequestId
from protocol.messages import Message, MessageKind
from protocol.secagg import (
    AggregationParty,
    SecaggSetupRequest,
    SecaggShareRequest,
    SecaggSplitRequest,
    SecaggSumReply,
    SecaggSumRequest,
    ShareSender,
)

FP = "sha256:" + "cd" * 32
ROUND = bytes(range(16))
PARTIES = (
    AggregationParty(NodeId("charlie"), "wss://10.0.0.9:8765", FP),
    AggregationParty(NodeId("hospital_a"), "wss://10.0.0.2:8765", FP),
)
SHAPES = {"0.weight": (1, 2), "0.bias": (1,)}
RING = {"0.weight": torch.tensor([[5, -7]]), "0.bias": torch.tensor([2**62])}

EXAMPLES: dict[MessageKind, Message] = {
    MessageKind.SECAGG_SETUP: SecaggSetupRequest(
        RequestId(40), ROUND, (ShareSender(0, NodeId("hospital_a"), FP), ShareSender(1, NodeId("hospital_b"), FP)),
        300.0,
    ),
    MessageKind.SECAGG_SPLIT: SecaggSplitRequest(RequestId(41), ROUND, 0, PARTIES),
    MessageKind.SECAGG_SHARE: SecaggShareRequest(RequestId(42), ROUND, 1, SHAPES, bytes(16)),
    MessageKind.SECAGG_SUM: SecaggSumRequest(RequestId(43), ROUND, (0, 1), False),
    MessageKind.SECAGG_SUM_REPLY: SecaggSumReply(RequestId(43), (), RING),
}
