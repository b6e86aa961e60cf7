"""Trainer jobs: their state counts against the submitter, failed jobs free it, jobs are capped per principal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from peer.server.auth import AnonymousAuthenticator
from node.server.executor import Executor
from node.server.session import Outcome, Session
from node.server.store import MemoryStore, Quota
from node.server.fl.trainer import MAX_JOBS_PER_PRINCIPAL, TrainerJobs
from node.server.transfers import TransferService
from protocol.codec import encode_message_bytes
from protocol.errors import NotFound
from protocol.federated import JobOwner, JobResultRequest, JobStatus, JobStatusReply, JobStatusRequest, JobSubmitRequest
from protocol.ids import NodeId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import ErrorReply, HelloReply, HelloRequest, MessageKind

NODE = NodeId("trainer")
FP = "sha256:" + "ab" * 32
SPEC = ({"layer": "Linear", "args": {"in_features": 64, "out_features": 64, "bias": True}},)
STATE_BYTES = (64 * 64 + 64) * 4
HYPER = {"lr": 0.1, "local_epochs": 1, "batch_size": 32, "optimizer": "sgd", "loss": "mse",
         "momentum": 0.0, "weight_decay": 0.0}
UNREACHABLE = JobOwner("gone", "wss://127.0.0.1:9", FP, "data")  # nothing listens: every round fails


def _submit(rid: int) -> JobSubmitRequest:
    state = {"0.weight": torch.zeros(64, 64), "0.bias": torch.zeros(64)}
    return JobSubmitRequest(RequestId(rid), SPEC, state, HYPER, 7, 1, (UNREACHABLE,), 1, 5.0)


def _setup(store: MemoryStore) -> tuple[TrainerJobs, Session, Any]:
    def no_credentials(fingerprint: str | None) -> dict[str, Any]:
        return {}

    transfers = TransferService(NODE, store, no_credentials, 1 << 20)
    jobs = TrainerJobs(NODE, ("trainer",), transfers, store)
    session = Session(NODE, ("trainer",), Executor(NODE, store), store, AnonymousAuthenticator(), 1 << 26,
                      services=(jobs,))
    hello = HelloRequest(RequestId(1), PROTOCOL_VERSION, "t", (), {"scheme": "anonymous", "secret": b"s" * 32})
    step = session.receive(encode_message_bytes(hello))
    assert isinstance(step, Outcome) and isinstance(step.reply, HelloReply)
    return jobs, session, jobs.handlers(session)


async def _until_finished(handlers: Any, job_id: str) -> JobStatusReply:
    for _ in range(1200):  # a generous deadline: the failing link answers at once
        step = handlers[MessageKind.JOB_STATUS](JobStatusRequest(RequestId(9), job_id))
        if step.reply.status is not JobStatus.RUNNING:
            return step.reply  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not end")


def test_a_running_job_holds_its_state_and_a_failed_one_frees_it() -> None:
    """Submit reserves the job's memory; when it fails only the status stays and the quota is free again."""
    store = MemoryStore(Quota(max_bytes=1 << 20))

    async def run() -> None:
        jobs, session, handlers = _setup(store)
        principal = session.principal
        job_id = handlers[MessageKind.JOB_SUBMIT](_submit(2)).reply.job_id
        assert store.ledger.usage(principal)[1] == STATE_BYTES * 3  # initial, current, one owner's update
        status = await _until_finished(handlers, job_id)
        assert status.status is JobStatus.FAILED and status.error is not None
        assert store.ledger.usage(principal) == (0, 0)
        result = session.receive(encode_message_bytes(JobResultRequest(RequestId(3), job_id)))
        assert isinstance(result, Outcome) and isinstance(result.reply, ErrorReply)
        assert "state was freed" in result.reply.message
        await jobs.close()

    asyncio.run(run())


def test_a_job_over_the_quota_is_refused_before_it_runs() -> None:
    """A job whose state does not fit the submitter's quota is QUOTA_EXCEEDED, naming trainer jobs."""
    store = MemoryStore(Quota(max_bytes=STATE_BYTES * 2))

    async def run() -> None:
        jobs, session, _ = _setup(store)
        step = session.receive(encode_message_bytes(_submit(2)))
        assert isinstance(step, Outcome) and isinstance(step.reply, ErrorReply)
        assert step.reply.code == "QUOTA_EXCEEDED" and "trainer jobs" in step.reply.message
        await jobs.close()

    asyncio.run(run())


def test_a_principal_keeps_its_most_recent_jobs_only() -> None:
    """Past MAX_JOBS_PER_PRINCIPAL jobs the principal's oldest finished job is forgotten."""
    store = MemoryStore(Quota(max_bytes=1 << 24))

    async def run() -> None:
        jobs, _, handlers = _setup(store)
        ids = []
        for rid in range(MAX_JOBS_PER_PRINCIPAL + 2):
            ids.append(handlers[MessageKind.JOB_SUBMIT](_submit(10 + rid)).reply.job_id)
            await _until_finished(handlers, ids[-1])
        for forgotten in ids[:2]:
            with pytest.raises(NotFound):
                handlers[MessageKind.JOB_STATUS](JobStatusRequest(RequestId(9), forgotten))
        await _until_finished(handlers, ids[2])
        await jobs.close()

    asyncio.run(run())
