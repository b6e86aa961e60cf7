"""The client's side of federated learning: dataset pointers and jobs on a trainer node.

Owns :class:`DatasetPointer` (a dataset found through the gateway: its
node entry, name, shape, sample count and the owner's training policy, and
how to reach it; what ``node.fl.FedAvg`` trains on, and how it shows its
progress), :class:`OwnerLink` (the :class:`~node.fl.links.Participant` a
job gets for it: ``train`` requests on the synchronous client, answered as
``concurrent.futures`` futures, so a round's owners train concurrently
without threads of ours; its owner node also serves as a
secure-aggregation party), :class:`HandleParty` (a node handle as a
:class:`~node.fl.links.PartyLink`: the crypto provider, or an owner node),
and :class:`RemoteJob` (a job handed to a trainer node: status, history
and result by job id, after a disconnect too).

The raw rows stay on their node: :meth:`DatasetPointer.features` gives a
pointer to compute on, and its ``get`` is refused (``PERMISSION_DENIED``).
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, MutableMapping, TypeVar

import torch

from protocol.errors import BadRequest, PeerUnavailable, TesseraError, error_class_for
from protocol.federated import (
    JobResultReply,
    JobResultRequest,
    JobStatus,
    JobStatusReply,
    JobStatusRequest,
    JobSubmitReply,
    TrainReply,
    dataset_object_ids,
)
from protocol.ids import NodeId, RequestId
from protocol.messages import ErrorReply, Reply, Request
from protocol.records import DatasetPolicy, DatasetSummary
from protocol.secagg import AggregationParty

from node.fl.fedavg import FedAvg
from node.fl.history import History
from node.fl.job_errors import RoundFailed
from node.fl.links import DatasetRef
from node.fl.progress import round_summary
from node.fl.results import LocalResult
from node.fl.spec import State, build_model
from node.fl.wire import TrainTask, result_from_reply, train_request
from peer.client.core import Built
from peer.client.tracker import rebuild_error
from node.client.fl.dialing import BackgroundDial
from node.client.fl.progress import ProgressBar
from node.client.handle import NodeHandle
from node.client.pointer import Pointer

__all__ = [
    "DatasetPointer", "OwnerLink", "HandleParty", "RemoteJob", "submit_job", "describe_policy", "POLL_INTERVAL",
]

R = TypeVar("R", bound=Reply)

POLL_INTERVAL = 0.2
"""Seconds between status polls while waiting for a trainer node's job."""


class OwnerLink:
    """One dataset's owner as a round participant, over a client connection."""

    def __init__(self, remote: Callable[[], NodeHandle], ref: DatasetRef) -> None:
        self.remote = remote
        """The owner's connection, opened at the first task (a dead owner fails that task)."""
        self.ref = ref

    def party(self) -> HandleParty:
        """The owner's node as a secure-aggregation party, over the same connection."""
        return HandleParty(self.remote(), self.ref.party)

    def train(self, task: TrainTask) -> concurrent.futures.Future[LocalResult]:
        remote = self.remote()
        result: concurrent.futures.Future[LocalResult] = concurrent.futures.Future()
        reply = remote.call_async(lambda rid: train_request(rid, self.ref.name, task))
        reply.add_done_callback(lambda done: self._settle(done, result))
        return result

    def _settle(self, done: concurrent.futures.Future[Reply], result: concurrent.futures.Future[LocalResult]) -> None:
        """On the connection's reader thread: the reply (or the lost connection) settles the result."""
        if result.done():  # cancelled: the round's deadline passed
            return
        try:
            reply = done.result()
            if isinstance(reply, ErrorReply):
                raise rebuild_error(reply, f"train({self.ref.name})", self.ref.node_id)
            if not isinstance(reply, TrainReply):
                raise BadRequest(f"{self.ref.node_id} answered train with {reply.KIND.value}", {})
            value = result_from_reply(reply)
        except BaseException as exc:  # handed to the round loop, which decides
            _settle_once(result, exc=exc)
            return
        _settle_once(result, value=value)


class HandleParty:
    """A node reached through a client handle, as a secure-aggregation party."""

    def __init__(self, handle: NodeHandle, address: AggregationParty) -> None:
        self.handle = handle
        self.address = address

    @classmethod
    def of(cls, handle: NodeHandle) -> HandleParty:
        """The party behind ``handle``, named by the certificate its TLS connection verified."""
        fingerprint = handle.fingerprint
        if fingerprint is None:
            raise BadRequest(
                f"{handle.id}: secure aggregation needs a TLS connection to every party "
                "(in-process and --insecure nodes cannot vouch for their certificates)", {"node": handle.id},
            )
        return cls(handle, AggregationParty(NodeId(handle.id), handle.url, fingerprint))

    def call(self, build: Callable[[RequestId], Request]) -> concurrent.futures.Future[Reply]:
        built = Built(build)
        result: concurrent.futures.Future[Reply] = concurrent.futures.Future()

        def settle(done: concurrent.futures.Future[Reply]) -> None:
            try:
                reply = done.result()
                if isinstance(reply, ErrorReply):
                    raise rebuild_error(reply, f"{built.kind}({self.address.node})", self.address.node)
            except BaseException as exc:  # handed to the round loop, which decides
                _settle_once(result, exc=exc)
                return
            _settle_once(result, value=reply)

        self.handle.call_async(built).add_done_callback(settle)
        return result


def _settle_once(future: concurrent.futures.Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


class DatasetPointer:
    """A dataset on a data owner's node, as the gateway announced it."""

    def __init__(
        self, node_id: str, url: str, fingerprint: str, summary: DatasetSummary,
        connect: Callable[[], NodeHandle],
    ) -> None:
        self.node_id = node_id
        self.url = url
        self.fingerprint = fingerprint
        self.summary = summary
        self._connect = connect
        self._remote: NodeHandle | None = None

    @property
    def name(self) -> str:
        return self.summary.name

    @property
    def shape(self) -> tuple[int, ...]:
        """``(samples, *features)`` as the owner announced it."""
        return self.summary.shape

    @property
    def samples(self) -> int:
        return self.summary.samples

    @property
    def policy(self) -> DatasetPolicy | None:
        """The owner's training policy for this dataset as announced (``None``: an older owner).

        ``policy.epsilon_remaining`` is as of the owner's last registration;
        every ``train_reply`` says it exactly (``FedAvg``'s ``history.epsilon_remaining``).
        """
        return self.summary.policy

    @property
    def ref(self) -> DatasetRef:
        return DatasetRef(self.node_id, self.url, self.fingerprint, self.name, tuple(self.shape[1:]), self.samples)

    def participant(self, links: MutableMapping[str, Any]) -> OwnerLink:
        """The job's participant for this dataset: one connection per node per job.

        The connection is dialed now, in the background, so that a job's
        owners are all dialed at once; the first task waits for it.
        """
        dial = links.get(self.node_id)
        if dial is None:
            dial = links[self.node_id] = BackgroundDial(self._connect, self.node_id)
        return OwnerLink(dial.handle, self.ref)

    def progress(self, rounds: int) -> ProgressBar:
        """A job's progress bar (``FedAvg(..., progress=True)``)."""
        return ProgressBar(rounds, "FedAvg")

    def node(self) -> NodeHandle:
        """A connection to the dataset's node (opened once, kept by this pointer)."""
        if self._remote is None:
            self._remote = self._connect()
        return self._remote

    def features(self) -> Pointer:
        """A pointer to the rows' features, to compute on; ``get`` is refused."""
        return self.node().pointer(dataset_object_ids(self.name)[0])

    def labels(self) -> Pointer:
        """A pointer to the rows' labels, to compute on; ``get`` is refused."""
        return self.node().pointer(dataset_object_ids(self.name)[1])

    def __repr__(self) -> str:
        policy = describe_policy(self.policy)
        return f"<DatasetPointer {self.node_id}/{self.name} {list(self.shape)}{', ' + policy if policy else ''}>"


def describe_policy(policy: DatasetPolicy | None) -> str:
    """A dataset policy in a few words: ``DP epsilon 7.5 of 10 left (delta 1e-05), min batch 16, ...``."""
    if policy is None:
        return ""
    parts = []
    if policy.dp:
        left = "?" if policy.epsilon_remaining is None else f"{policy.epsilon_remaining:.3g}"
        total = "?" if policy.epsilon is None else f"{policy.epsilon:.3g}"
        delta = "" if policy.delta is None else f" (delta {policy.delta:.2g})"
        parts.append(f"DP epsilon {left} of {total} left{delta}")
    else:
        parts.append("no DP")
    if policy.min_batch > 1:
        parts.append(f"min batch {policy.min_batch}")
    if policy.secure_min_owners:
        parts.append(f"secure aggregation only, >= {policy.secure_min_owners} owners")
    if policy.allowed_layers is not None:
        parts.append("layers " + ",".join(policy.allowed_layers))
    return ", ".join(parts)


class RemoteJob:
    """A FedAvg job running on a trainer node, by id; survives the client reconnecting."""

    def __init__(self, trainer: NodeHandle, job_id: str, job: FedAvg | None = None) -> None:
        self.trainer = trainer
        self.job_id = job_id
        self.job = job

    def _ask(self, request: type[JobStatusRequest | JobResultRequest], expected: type[R]) -> R:
        job_id = self.job_id
        return self.trainer.call(lambda rid: request(rid, job_id), expected, f"{request.KIND.value}({job_id[:8]})")

    def status(self) -> JobStatusReply:
        """Where the job is: status, rounds, history so far, error if it failed."""
        return self._ask(JobStatusRequest, JobStatusReply)

    def history(self) -> History:
        return History(self.status().history)

    def state(self) -> State:
        """The global model's state as of the job's last good round."""
        reply = self._ask(JobResultRequest, JobResultReply)
        return {k: v.clone() for k, v in reply.state.items()}

    def model(self) -> torch.nn.Sequential:
        """The global model (needs the job this handle was made from, for its spec)."""
        if self.job is None:
            raise BadRequest("model() needs the FedAvg job: use remote.job(job_id, job) or state()", {})
        return build_model(self.job.plan.spec, self.state())

    def wait(self, timeout: float | None = None, progress: bool = True) -> History:
        """Until the job ends; its history.  Raises the job's error if it failed.

        ``progress`` shows the rounds as the trainer reports them, with the
        same bar and caption as a job run from this process (:class:`ProgressBar`).

        The global model is also recorded on the ``FedAvg`` job this handle
        was made from (``job.state``, ``job.history``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.status()
        history = History()
        bar = ProgressBar(status.rounds, f"FedAvg on {self.trainer.id}") if progress else None
        try:
            while True:
                for record in status.history[len(history):]:
                    history.append(record)
                    if bar is not None:
                        bar.round_done(record, round_summary(record, history.epsilon_spent))
                if status.status is not JobStatus.RUNNING:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.job_id} still running after {timeout} s")
                time.sleep(POLL_INTERVAL)
                status = self.status()
        finally:
            if bar is not None:
                bar.close()
        if self.job is not None:
            self.job.history = history
            if status.error is None:  # a failed job's state is freed on the trainer
                self.job.with_state(self.state())
        if status.error is not None:
            raise _job_error(status.error.code, status.error.message, self.trainer.id)
        return history

    def __repr__(self) -> str:
        return f"<RemoteJob {self.job_id} on {self.trainer.id}>"


def _job_error(code: str, message: str, peer: str) -> TesseraError:
    cls = error_class_for(code)
    if cls is PeerUnavailable and message.startswith("round "):
        cls = RoundFailed
    return cls(message, {}, command="job", peer=peer)


def submit_job(trainer: NodeHandle, job: FedAvg) -> RemoteJob:
    """Hand ``job`` to ``trainer`` (a node started with ``--role trainer``); returns at once."""
    reply = trainer.call(job.plan.submit_request, JobSubmitReply, f"job_submit({job!r})")
    return RemoteJob(trainer, reply.job_id, job)
