"""One message of every secret-sharing kind, shared by the mpc codec and spec tests."""

from __future__ import annotations

import torch

from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import Message, MessageKind
from protocol.mpc import (
    BilinearKind,
    DealerRef,
    MpcDealRequest,
    MpcMaterialRequest,
    MpcOpenRequest,
    MpcSplitReply,
    MpcSplitRequest,
    MpcStepRequest,
    OpenRound,
    PartyAddress,
    SplitTarget,
    StepOp,
    TruncationScheme,
    WireConv,
    WireTriple,
    WireTruncation,
)

FP = "sha256:" + "cd" * 32
SESSION = bytes(range(16))
PARTIES = (
    PartyAddress(NodeId("bob"), "wss://bob.example:8765", FP),
    PartyAddress(NodeId("alice"), "wss://alice.example:8765", FP),
)
SPECS = (
    WireTriple(BilinearKind.CONV2D, (1, 2, 5, 5), (3, 2, 3, 3), WireConv((1, 1), (1, 1), (1, 1), 1)),
    WireTruncation((1, 3, 5, 5), 16),
)
RING = torch.arange(4, dtype=torch.int64)

EXAMPLES: dict[MessageKind, Message] = {
    MessageKind.MPC_SPLIT: MpcSplitRequest(
        RequestId(1), ObjectId(7), 16,
        tuple(SplitTarget(p.node, p.url, p.fingerprint, ObjectId(9 + i), bytes(32)) for i, p in enumerate(PARTIES)),
    ),
    MessageKind.MPC_SPLIT_REPLY: MpcSplitReply(RequestId(1), "float32", (2, 3), 16),
    MessageKind.MPC_DEAL: MpcDealRequest(RequestId(1), SESSION, PARTIES, SPECS),
    MessageKind.MPC_MATERIAL: MpcMaterialRequest(RequestId(1), SESSION, 1, 2, SPECS, bytes(16), (RING,)),
    MessageKind.MPC_STEP: MpcStepRequest(
        RequestId(1), SESSION, 0, PARTIES, DealerRef(NodeId("charlie"), FP), StepOp.CONV2D,
        ObjectId(1), ObjectId(2), SPECS[0].conv, 16, TruncationScheme.DEALER, ObjectId(3), 30.0,
    ),
    MessageKind.MPC_OPEN: MpcOpenRequest(RequestId(1), SESSION, 1, int(OpenRound.BEAVER), (RING, RING), None),
}
