"""One message of every federated kind, shared by the codec and spec tests."""

from __future__ import annotations

import torch

from protocol.federated import (
    Dropout,
    JobError,
    JobOwner,
    JobResultReply,
    JobResultRequest,
    JobStatus,
    JobStatusReply,
    JobStatusRequest,
    JobSubmitReply,
    JobSubmitRequest,
    OwnerPrivacy,
    RoundRecord,
    TrainReply,
    TrainRequest,
    WireMetrics,
)
from protocol.ids import RequestId
from protocol.messages import Message, MessageKind

FP = "sha256:" + "ab" * 32
SPEC = ({"layer": "Linear", "args": {"in_features": 2, "out_features": 1, "bias": True}},)
STATE = {"0.weight": torch.zeros(1, 2), "0.bias": torch.zeros(1)}
HYPER = {"lr": 0.1, "local_epochs": 1, "batch_size": 32, "optimizer": "sgd", "loss": "mse",
         "momentum": 0.0, "weight_decay": 0.0}
METRICS = WireMetrics(0.5, 0.75, 40)
RECORD = RoundRecord(
    0, (0, 2), (Dropout(1, "connection lost"),), 120, 0.25, METRICS, 0.01, (OwnerPrivacy(0, 0.75, 9.25),)
)
OWNER = JobOwner("hospital_a", "wss://10.0.0.2:8765", FP, "breast_cancer")

EXAMPLES: dict[MessageKind, Message] = {
    MessageKind.TRAIN: TrainRequest(RequestId(30), "breast_cancer", SPEC, STATE, HYPER, 7, 3, 1, job_id="ab" * 16),
    MessageKind.TRAIN_REPLY: TrainReply(RequestId(30), STATE, 120, 0.25, METRICS, 0.75, 9.25),
    MessageKind.JOB_SUBMIT: JobSubmitRequest(RequestId(31), SPEC, STATE, HYPER, 7, 20, (OWNER,), 1, 60.0),
    MessageKind.JOB_SUBMIT_REPLY: JobSubmitReply(RequestId(31), "ab" * 16),
    MessageKind.JOB_STATUS: JobStatusRequest(RequestId(32), "ab" * 16),
    MessageKind.JOB_STATUS_REPLY: JobStatusReply(
        RequestId(32), "ab" * 16, JobStatus.FAILED, 20, (RECORD,), JobError("PEER_UNAVAILABLE", "round 1 failed")
    ),
    MessageKind.JOB_RESULT: JobResultRequest(RequestId(33), "ab" * 16),
    MessageKind.JOB_RESULT_REPLY: JobResultReply(RequestId(33), "ab" * 16, 1, STATE),
}
