"""The trainer role: FedAvg jobs a client hands over, run by this node.

Owns :class:`TrainerJobs`, a :class:`~node.server.session.SessionService`
for ``job_submit``, ``job_status`` and ``job_result`` (served only by nodes
started with ``--role trainer``; others answer ``BAD_REQUEST``).  A
submitted job is checked at once (spec, state, hyperparameters, owners:
``BAD_REQUEST`` before any round) and answered with a random job id; its
rounds then run in a worker thread through the same loop, strategy and
aggregation protocol as a client's ``FedAvg.fit()``
(:func:`node.fl.rounds.run_rounds`), each owner reached over a
pooled node-to-node link (:meth:`~node.server.transfers.TransferService.link`):
this node dials the owner's URL pinning the fingerprint the client took
from the gateway and proves its own identity (a ``node:<id>@<fp>``
principal, so owners must be members of the same network).  The link's calls run on the event loop and come back to the
round loop as ``concurrent.futures`` futures.  A job with a ``secure``
section runs secure aggregation (:class:`~node.fl.secure_rounds.SecureRounds`):
the crypto provider and the owners' nodes are its aggregation parties,
reached over the same kind of links, and this node sees per-party sums only.

A job belongs to the principal that submitted it: others get ``NOT_FOUND``
for its id.  The client may disconnect; status and result stay queryable
for :data:`JOB_RETENTION` seconds after the job ends, for the
:data:`MAX_JOBS_PER_PRINCIPAL` most recent jobs of each principal.

A job's memory counts against its submitter's quota (a
:class:`~node.server.quota.Reservation`, ``QUOTA_EXCEEDED`` at submit):
while it runs, its initial and current state and one update per owner
(:func:`_running_bytes`); once done, its final state only, until it is
forgotten.  A failed job keeps only its status and error text: its state is
freed at once.  Runs inside a node on its event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch

from protocol.errors import BadRequest, NotFound, QuotaExceeded, TesseraError
from protocol.federated import (
    JobError as WireJobError,
    JobOwner,
    JobResultRequest,
    JobStatus,
    JobStatusRequest,
    JobSubmitRequest,
    RoundRecord,
    TrainReply,
)
from protocol.ids import NodeId, RequestId
from protocol.messages import ErrorReply, MessageKind, Reply, Request
from protocol.records import Role
from protocol.secagg import AggregationParty

from node.fl.hyperparameters import Hyperparameters
from node.fl.links import DatasetRef
from node.fl.plan import JobPlan
from node.fl.rounds import Links, aggregation_for, run_rounds
from node.fl.secure import check_precision
from node.fl.spec import ModelSpec, State, build_model
from node.fl.strategy import FedAvgStrategy
from node.fl.wire import TrainTask, result_from_reply, train_request
from node.fl.results import LocalResult
from peer.client.core import Built
from peer.client.tracker import rebuild_error
from node.server.session import Outcome, Session, Step
from node.server.store import Hold, ObjectStore, Principal, Reservation
from node.server.transfers import TransferService

__all__ = ["TrainerJobs", "JOB_RETENTION", "MAX_RUNNING_JOBS_PER_PRINCIPAL", "MAX_JOBS_PER_PRINCIPAL", "MAX_JOBS"]

log = logging.getLogger("tessera.node.trainer")

JOB_RETENTION = 3600.0
"""Seconds a finished job's status and result stay queryable."""

MAX_RUNNING_JOBS_PER_PRINCIPAL = 4

MAX_JOBS_PER_PRINCIPAL = 16
"""Jobs one principal has on a node (running or finished, not yet forgotten); a new
job beyond it makes the node forget that principal's oldest finished job."""

JOB_THREADS = 16
"""Jobs whose rounds run at once on a node; more wait for a thread (each holds one for its life)."""

MAX_JOBS = 256
"""Jobs (running or finished, not yet forgotten) one node keeps."""

CLOSE_GRACE = 5.0
"""Seconds ``close`` waits for running jobs to notice they must stop."""


@dataclass(eq=False)
class _Job:
    job_id: str
    owner: Principal
    plan: JobPlan | None
    """None once finished: the initial state is not kept."""
    rounds: int
    state: State
    held: Reservation
    """The owner's quota held for the job's memory."""
    history: list[RoundRecord] = field(default_factory=list)
    status: JobStatus = JobStatus.RUNNING
    error: WireJobError | None = None
    finished: float = 0.0
    stop: bool = False


class _ChannelParty:
    """A secure-aggregation party over a pooled node-to-node link; calls bridged to the event loop."""

    def __init__(self, transfers: TransferService, loop: asyncio.AbstractEventLoop, address: AggregationParty) -> None:
        self.transfers = transfers
        self.loop = loop
        self.address = address

    def call(self, build: Callable[[RequestId], Request]) -> concurrent.futures.Future[Reply]:
        return asyncio.run_coroutine_threadsafe(self._call(build), self.loop)

    async def _call(self, build: Callable[[RequestId], Request]) -> Reply:
        link = await self.transfers.link(self.address.url, self.address.fingerprint)
        built = Built(build)
        reply = await link.call(built)
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, f"{built.kind}({self.address.node})", self.address.node)
        return reply


class _LinkParticipant:
    """One owner's dataset over a pooled node-to-node link; calls bridged to the event loop."""

    def __init__(self, transfers: TransferService, loop: asyncio.AbstractEventLoop, owner: JobOwner) -> None:
        self.transfers = transfers
        self.loop = loop
        self.owner = owner
        self.ref = DatasetRef(owner.node_id, owner.url, owner.fingerprint, owner.dataset, (), 0)

    def party(self) -> _ChannelParty:
        return _ChannelParty(self.transfers, self.loop, self.ref.party)

    def train(self, task: TrainTask) -> concurrent.futures.Future[LocalResult]:
        return asyncio.run_coroutine_threadsafe(self._train(task), self.loop)

    async def _train(self, task: TrainTask) -> LocalResult:
        link = await self.transfers.link(self.owner.url, self.owner.fingerprint)
        reply = await link.call(lambda rid: train_request(rid, self.owner.dataset, task))
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, f"train({self.owner.dataset})", self.owner.node_id)
        if not isinstance(reply, TrainReply):
            raise BadRequest(f"{self.owner.node_id} answered train with {reply.KIND.value}", {})
        return result_from_reply(reply)


class TrainerJobs:
    """Jobs run by this node for the principals that submitted them."""

    def __init__(
        self,
        node_id: NodeId,
        roles: tuple[str, ...],
        transfers: TransferService,
        store: ObjectStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.enabled = Role.TRAINER.value in roles
        self.transfers = transfers
        self.store = store
        self.clock = clock
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner = concurrent.futures.ThreadPoolExecutor(JOB_THREADS, thread_name_prefix="trainer-job")

    def handlers(self, session: Session) -> Mapping[MessageKind, Callable[[Any], Step]]:
        return {
            MessageKind.JOB_SUBMIT: lambda request: self._submit(session, request),
            MessageKind.JOB_STATUS: lambda request: self._status(session, request),
            MessageKind.JOB_RESULT: lambda request: self._result(session, request),
        }

    # -- handlers (on the loop) -------------------------------------------------

    def _submit(self, session: Session, request: JobSubmitRequest) -> Step:
        assert session.principal is not None
        if not self.enabled:
            raise BadRequest("this node does not run jobs: start a node with --role trainer", {})
        self._forget_old(session.principal)
        running = sum(1 for j in self._jobs.values() if j.owner == session.principal and j.status is JobStatus.RUNNING)
        if running >= MAX_RUNNING_JOBS_PER_PRINCIPAL or len(self._jobs) >= MAX_JOBS:
            raise QuotaExceeded(
                f"at most {MAX_RUNNING_JOBS_PER_PRINCIPAL} running jobs per principal and "
                f"{MAX_JOBS} jobs per node", {"limit": MAX_RUNNING_JOBS_PER_PRINCIPAL},
            )
        job_id = secrets.token_hex(16)
        # Reserved before the plan copies the state and builds the model to check it.
        held = self.store.reserve(session.principal, Hold.JOB, _running_bytes(request.state, len(request.owners)))
        try:
            plan = replace(_plan(request), job_id=job_id)  # owners' audit trails name its rounds by it
        except BaseException:
            held.release()
            raise
        job = _Job(job_id, session.principal, plan, plan.rounds, plan.state, held)
        self._jobs[job.job_id] = job
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("job %s from %s: %d rounds over %d owners", job.job_id, job.owner, plan.rounds, len(plan.owners))
        return Outcome(request.reply(job.job_id))

    def _job(self, session: Session, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None or job.owner != session.principal:
            raise NotFound(f"no job {job_id[:40]!r} of yours on this node", {"job_id": job_id[:40]})
        return job

    def _status(self, session: Session, request: JobStatusRequest) -> Step:
        job = self._job(session, request.job_id)
        return Outcome(request.reply(job.status, job.rounds, tuple(job.history), job.error))

    def _result(self, session: Session, request: JobResultRequest) -> Step:
        job = self._job(session, request.job_id)
        if job.status is JobStatus.FAILED:
            raise BadRequest(
                f"job {job.job_id} failed: its state was freed, job_status has its error", {"job_id": job.job_id}
            )
        return Outcome(request.reply(len(job.history), job.state))

    def _forget_old(self, principal: Principal) -> None:
        """Forget jobs past their retention, and ``principal``'s oldest finished ones beyond its cap."""
        now = self.clock()
        old = [i for i, j in self._jobs.items() if j.finished and now - j.finished > JOB_RETENTION]
        mine = [i for i, j in self._jobs.items() if j.owner == principal and i not in old]
        finished = sorted((i for i in mine if self._jobs[i].finished), key=lambda i: self._jobs[i].finished)
        old += finished[: max(0, len(mine) + 1 - MAX_JOBS_PER_PRINCIPAL)]
        for job_id in old:
            self._jobs.pop(job_id).held.release()

    # -- running ----------------------------------------------------------------
    # A job's rounds block their thread for the job's whole life (waiting on
    # owners), so jobs run on a pool of their own: on the loop's shared worker
    # pool a few running jobs would starve every link opening and heavy
    # command of the node.  Its threads are reused (a thread per job left
    # glibc's cached stacks and per-thread memory behind: +2 MiB RSS a job).

    async def _run(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        plan = job.plan
        assert plan is not None
        owners = [JobOwner(r.node_id, r.url, r.fingerprint, r.name) for r in plan.owners]
        participants = [_LinkParticipant(self.transfers, loop, o) for o in owners]

        def on_round(record: RoundRecord, state: State) -> None:
            job.history.append(record)
            job.state = state

        secure = plan.secure
        provider = None if secure is None else _ChannelParty(self.transfers, loop, secure.crypto_provider)
        links = Links(participants, provider)
        try:
            await loop.run_in_executor(
                self._runner, run_rounds, plan, links, FedAvgStrategy(plan), aggregation_for(plan), on_round,
                lambda: job.stop,
            )
            job.status = JobStatus.DONE
        except TesseraError as exc:
            code = exc.code.value if exc.code is not None else "PEER_UNAVAILABLE"
            job.status, job.error = JobStatus.FAILED, WireJobError(code, exc.message)
            log.info("job %s failed: %s", job.job_id, exc.message)
            _drop_frames(exc)
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            job.status, job.error = JobStatus.FAILED, WireJobError("INTERNAL", "internal error")
            _drop_frames(exc)
        finally:
            job.finished = self.clock()
            job.plan = None  # the initial state and the spec are not needed any more
            if job.status is not JobStatus.DONE:
                job.state = {}  # a failed job keeps its status and error text only
            job.held.shrink(job.held.nbytes - _state_bytes(job.state))

    async def close(self) -> None:
        """Tell running jobs to stop after their round, and wait for them a little."""
        for job in self._jobs.values():
            job.stop = True
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
        for task in list(self._tasks):
            task.cancel()
        self._runner.shutdown(wait=False)


def _drop_frames(exc: BaseException) -> None:
    """Clear the locals of the frames a failed job's error went through.

    Its traceback (and those of the owners' errors it was raised over) holds
    the round loop's frames, which hold the job's states in reference
    cycles: left to the cyclic garbage collector, whose full passes are rare
    in a process with torch loaded, a failed job's state would outlive it.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]


def _state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(value.numel() * value.element_size() for value in state.values())


def _running_bytes(state: Mapping[str, torch.Tensor], owners: int) -> int:
    """What a running job holds: its initial and current state, and one update per owner in a round."""
    return _state_bytes(state) * (2 + owners)


def _plan(request: JobSubmitRequest) -> JobPlan:
    """The checked job; every failure is ``BAD_REQUEST`` before anything runs."""
    spec = ModelSpec.from_wire(list(request.spec))
    if "seed" in request.hyperparameters:
        raise BadRequest("hyperparameters must not carry a seed: job_seed is the job's seed", {})
    hyper = Hyperparameters.from_wire({**request.hyperparameters, "seed": request.job_seed})
    build_model(spec, request.state)  # the state must fit the spec
    owners = tuple(DatasetRef(o.node_id, o.url, o.fingerprint, o.dataset, (), 0) for o in request.owners)
    for owner in owners:
        if not owner.url.startswith("wss://"):
            raise BadRequest("a trainer reaches owners over TLS only (wss:// URLs)", {"node": owner.node_id})
    if request.secure is not None:
        check_precision(request.secure.precision)
        if not request.secure.crypto_provider.url.startswith("wss://"):
            raise BadRequest("a trainer reaches the crypto provider over TLS only (wss:// URLs)", {})
    state = {k: v.clone() for k, v in request.state.items()}  # decoded tensors view the frame
    return JobPlan(spec, state, hyper, request.rounds, owners, request.min_participants, request.round_timeout,
                   request.secure)
