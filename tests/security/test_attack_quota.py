"""One user with a 32 MiB quota tries to make a node hold far more, every way it can.

Each attack runs against its own node process (TLS, user tokens, started
with ``--max-memory-mib 32``), so its memory figures are its own: the
node's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``) after the
attack must stay within the resident memory before it plus the quota, the
largest message the attack sent, and some slack
(:mod:`tests.security.quota_watch`).  Every attack also
checks that the over-limit attempt is answered ``QUOTA_EXCEEDED`` and that a
bystander (another user, with an object on the node) is still served.  The
figures are printed (``pytest -s``): they go into the security notes.

The ways in: unfinished streamed uploads on several connections, frames
queued behind a busy command, incoming deliveries begun and never
finished, failed trainer jobs, parked secure-aggregation updates (in bytes,
and in number: one user must not lock another out), and connections.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterator

import numpy as np
import pytest
import torch

from peer.security.identity import Identity
from protocol.codec import encode_message_bytes
from protocol.federated import JobOwner, JobStatus, JobStatusReply, JobStatusRequest, JobSubmitRequest, TrainRequest
from protocol.messages import (
    AckReply, ErrorReply, ExpectRequest, DeliverRequest, HelloReply, PutChunkRequest, PutRequest, TransferRequest,
)
from protocol.secagg import SecureTrain
from tests.security.attack_wire import Raw, admit_user, as_user, codes, errors, new_id, node_hello
from tests.security.quota_watch import MiB, QUOTA_MIB, Watch, drained
from tests.support import NodeProcess, start_node

CHUNK = torch.zeros(MiB, dtype=torch.uint8)
FP = "sha256:" + "ab" * 32
HYPER = {"lr": 0.1, "local_epochs": 1, "batch_size": 32, "optimizer": "sgd", "loss": "cross_entropy",
         "momentum": 0.0, "weight_decay": 0.0}


# -- the nodes --------------------------------------------------------------------


def _dataset(directory: Path) -> Path:
    """64 rows of 8 features and a 0/1 label, for the owner node's secure trainings."""
    generator = np.random.default_rng(0)
    table = np.column_stack([generator.standard_normal((64, 8)), generator.integers(0, 2, 64)])
    path = directory / "rows.csv"
    header = ",".join([f"f{i}" for i in range(8)] + ["target"])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.17g")
    return path


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    """One node per attack, all with a 32 MiB quota, started at once."""
    root = tmp_path_factory.mktemp("quota-nodes")
    quota = ("--max-memory-mib", str(QUOTA_MIB))
    owner = ("--dataset", f"rows={_dataset(root)}", "--dataset-label", "target", "--no-dp")
    plans: dict[str, tuple[str, ...]] = {
        "uploads": quota, "backlog": quota, "deliveries": quota, "connections": quota,
        "jobs": (*quota, "--role", "trainer"), "secagg": (*quota, *owner),
    }
    # One malloc arena: the figures then measure what a node holds, not how glibc spreads the
    # transient buffers of heavy work over one arena per worker thread (node.allocator keeps them).
    with pytest.MonkeyPatch.context() as env, ThreadPoolExecutor(len(plans)) as pool:
        env.setenv("MALLOC_ARENA_MAX", "1")
        futures = {name: pool.submit(start_node, root, f"q-{name}", *args) for name, args in plans.items()}
        procs = {name: future.result() for name, future in futures.items()}
    yield procs
    for proc in procs.values():
        assert proc.stop() == 0, proc.stderr()


def _run(body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(body())


async def _connections(proc: NodeProcess, token: str, count: int) -> list[Raw]:
    return [await Raw.open(proc, as_user(token, proc)) for _ in range(count)]


async def _close(raws: list[Raw]) -> None:
    for raw in raws:
        await raw.close()


# -- unfinished uploads ------------------------------------------------------------


def test_unfinished_uploads_on_many_connections(nodes: dict[str, NodeProcess]) -> None:
    """4 connections x 8 uploads of 4 MiB, 3 MiB sent of each: past 32 MiB the first chunk is QUOTA_EXCEEDED;
    closing the connections frees the reservations."""
    proc = nodes["uploads"]
    watch = Watch(proc, "unfinished uploads")
    token = admit_user(proc)

    def upload(object_id: int, rid: int) -> list[PutChunkRequest]:
        return [PutChunkRequest(rid + i, object_id, "uint8", (4 * MiB,), i * MiB, CHUNK, False) for i in range(3)]

    async def attack() -> tuple[list[Any], Any]:
        raws = await _connections(proc, token, 4)
        replies: list[Any] = []
        for raw in raws:
            replies += await raw.exchange([c for n in range(8) for c in upload(new_id(), 10 + 3 * n)])
        await _close(raws)
        after: list[Any] = []
        for _ in range(200):  # the node frees a connection's uploads once it has seen it close
            again = await Raw.open(proc, as_user(token, proc))
            after = await again.exchange([PutChunkRequest(5, new_id(), "uint8", (32 * MiB,), 0, CHUNK, False)])
            await again.close()
            if not codes(after):
                break
            await asyncio.sleep(0.05)
        return replies, after

    replies, after = _run(attack)
    watch.check(MiB)
    refused = [r for r in errors(replies) if r.code == "QUOTA_EXCEEDED"]
    assert len(refused) == 24, codes(replies)
    assert "unfinished uploads" in refused[0].message and "33554432-byte quota" in refused[0].message
    assert set(codes(replies)) == {"QUOTA_EXCEEDED", "BAD_REQUEST"}  # later chunks of a refused upload
    assert codes(after) == []  # a whole 32 MiB upload fits again


# -- frames queued behind a busy command -------------------------------------------


def test_frames_queued_behind_busy_commands(nodes: dict[str, NodeProcess]) -> None:
    """6 connections, each busy with a transfer to a black hole, then 15 puts of 1 MiB queued behind it:
    queued bytes count in the quota, the frames past it are answered QUOTA_EXCEEDED."""
    proc = nodes["backlog"]
    watch = Watch(proc, "queued frames")
    token = admit_user(proc)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # never accepts: the TLS handshake to it waits until the socket is closed
    url = f"wss://127.0.0.1:{hole.getsockname()[1]}"

    async def attack() -> list[Any]:
        raws = await _connections(proc, token, 6)
        for raw in raws:
            source = new_id()
            await raw.ws.send(encode_message_bytes(PutRequest(2, source, torch.zeros(1))))
            await raw.ws.send(encode_message_bytes(TransferRequest(3, source, "hole", url, FP, new_id(), bytes(32), False)))
            for n in range(15):
                await raw.ws.send(encode_message_bytes(PutRequest(10 + n, new_id(), CHUNK)))
        await drained(proc, raws)
        hole.close()  # the transfers fail now; the queued frames are served
        replies: list[Any] = []
        for raw in raws:
            replies += await raw.exchange([])
        await _close(raws)
        return replies

    try:
        replies = _run(attack)
    finally:
        hole.close()
    watch.check(MiB)
    found = codes(replies)
    assert found.count("PEER_UNAVAILABLE") == 6, found
    stored = 6 * 16 - len(found)
    assert stored * MiB <= QUOTA_MIB * MiB and "QUOTA_EXCEEDED" in found
    assert any("queued frames" in r.message for r in errors(replies) if r.code == "QUOTA_EXCEEDED"), found


# -- incoming deliveries -----------------------------------------------------------


def test_deliveries_begun_and_never_finished(nodes: dict[str, NodeProcess], identities: Callable[[str], Identity]) -> None:
    """A user expects 24 objects from its own node mallory, which sends 3 MiB of each 4 MiB one:
    past 32 MiB the first chunk is QUOTA_EXCEEDED (against the expecting user), and so are its later chunks."""
    proc = nodes["deliveries"]
    watch = Watch(proc, "incoming deliveries")
    token = admit_user(proc)
    mallory = identities("quota-mallory")
    ids = [new_id() for _ in range(24)]
    ticket = secrets.token_bytes(32)

    async def attack() -> list[Any]:
        user = await Raw.open(proc, as_user(token, proc))
        expected = await user.exchange([
            ExpectRequest(2 + i, oid, "quota-mallory", mallory.fingerprint, ticket) for i, oid in enumerate(ids)
        ])
        assert codes(expected) == [] and all(isinstance(r, AckReply) for r in expected), expected
        sender = await Raw.open(proc, node_hello(mallory, "quota-mallory", proc.fingerprint))
        assert isinstance(sender.greeting, HelloReply), sender.greeting
        replies = await sender.exchange([
            DeliverRequest(100 + 3 * n + i, oid, ticket, "uint8", (4 * MiB,), i * MiB, CHUNK, False)
            for n, oid in enumerate(ids) for i in range(3)
        ])
        await sender.close()
        await user.close()
        return replies

    replies = _run(attack)
    watch.check(MiB)
    refused = [r for r in errors(replies) if r.code == "QUOTA_EXCEEDED"]
    assert len(refused) == 16 * 3 and len(errors(replies)) == len(refused), codes(replies)
    assert "incoming transfers" in refused[0].message


# -- trainer jobs ------------------------------------------------------------------


def _job(rid: int, width: int, owner: JobOwner) -> JobSubmitRequest:
    spec = ({"layer": "Linear", "args": {"in_features": 1024, "out_features": width, "bias": False}},)
    return JobSubmitRequest(rid, spec, {"0.weight": torch.zeros(width, 1024)}, HYPER, 7, 1, (owner,), 1, 5.0)


def test_failed_trainer_jobs(nodes: dict[str, NodeProcess]) -> None:
    """24 jobs of 4 MiB state that fail at once (owner unreachable) keep no state; a job whose running memory
    does not fit the quota is QUOTA_EXCEEDED before it runs."""
    proc = nodes["jobs"]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused at once
    owner = JobOwner("gone", f"wss://127.0.0.1:{closed.getsockname()[1]}", FP, "rows")

    async def until_done(raw: Raw, job_id: str) -> JobStatusReply:
        for _ in range(1200):  # a generous deadline: the refused dial fails the round at once
            status = await raw.request(JobStatusRequest(new_id(), job_id))
            assert isinstance(status, JobStatusReply), status
            if status.status is not JobStatus.RUNNING:
                return status
            await asyncio.sleep(0.05)
        raise AssertionError("the job did not end")

    async def warm_up() -> None:
        """A node's first job loads the training code (about 50 MiB): that goes into the baseline."""
        raw = await Raw.open(proc, as_user(admit_user(proc), proc))
        reply = await raw.request(_job(2, 1024, owner))
        assert (await until_done(raw, reply.job_id)).status is JobStatus.FAILED
        await raw.close()

    async def attack() -> Any:
        raw = await Raw.open(proc, as_user(token, proc))
        for n in range(24):
            reply = await raw.request(_job(10 + n, 1024, owner))  # 4 MiB of state
            assert not isinstance(reply, ErrorReply), reply
            assert (await until_done(raw, reply.job_id)).status is JobStatus.FAILED
        too_big = await raw.request(_job(99, 2816, owner))  # 11 MiB: 33 MiB while running
        await raw.close()
        return too_big

    try:
        _run(warm_up)
        watch = Watch(proc, "failed trainer jobs")
        token = admit_user(proc)
        too_big = _run(attack)
    finally:
        closed.close()
    watch.check(11 * MiB)
    assert isinstance(too_big, ErrorReply) and too_big.code == "QUOTA_EXCEEDED", too_big
    assert "trainer jobs" in too_big.message


# -- parked secure-aggregation updates ----------------------------------------------


def _secure_train(rid: int, width: int) -> TrainRequest:
    """A secure train of Linear(8, 1000), ReLU, Linear(1000, width): small activations, ~1000 * width elements."""
    spec = (
        {"layer": "Linear", "args": {"in_features": 8, "out_features": 1000, "bias": True}},
        {"layer": "ReLU", "args": {}},
        {"layer": "Linear", "args": {"in_features": 1000, "out_features": width, "bias": True}},
    )
    state = {"0.weight": torch.zeros(1000, 8), "0.bias": torch.zeros(1000),
             "2.weight": torch.zeros(width, 1000), "2.bias": torch.zeros(width)}
    return TrainRequest(rid, "rows", spec, state, HYPER, 7, 0, 0, SecureTrain(secrets.token_bytes(16), 16))


async def _trains(proc: NodeProcess, token: str, requests: list[TrainRequest]) -> list[Any]:
    raw = await Raw.open(proc, as_user(token, proc))
    replies = [await raw.request(request) for request in requests]
    await raw.close()
    return replies


def test_parked_secure_updates_in_bytes(nodes: dict[str, NodeProcess]) -> None:
    """20 secure trainings of a 509,000-element model (a 3.9 MiB update each) parked for secagg_split:
    past the quota the train is QUOTA_EXCEEDED, naming parked updates."""
    proc = nodes["secagg"]
    # One training's working set (model, gradients, encoding) is not held: it goes into the baseline.
    warmed = _run(lambda: _trains(proc, admit_user(proc), [_secure_train(1, 500)]))
    assert codes(warmed) == [], warmed
    watch = Watch(proc, "parked secure updates (bytes)")
    token = admit_user(proc)
    replies = _run(lambda: _trains(proc, token, [_secure_train(10 + n, 500) for n in range(20)]))
    watch.check(2 * MiB)
    refused = [r for r in errors(replies) if r.code == "QUOTA_EXCEEDED"]
    assert len(errors(replies)) == len(refused) >= 12, codes(replies)
    assert "parked secure-aggregation updates" in refused[0].message


def test_parked_secure_updates_do_not_lock_out_another_user(nodes: dict[str, NodeProcess]) -> None:
    """One user parks as many small updates as it may (then QUOTA_EXCEEDED); another user still parks its own."""
    proc = nodes["secagg"]
    attacker, victim = admit_user(proc), admit_user(proc)

    async def attack() -> tuple[list[Any], Any]:
        raw = await Raw.open(proc, as_user(attacker, proc))
        replies = await raw.exchange([_secure_train(10 + n, 2) for n in range(80)])
        await raw.close()
        other = await Raw.open(proc, as_user(victim, proc))
        served = await other.request(_secure_train(5, 2))
        await other.close()
        return replies, served

    replies, served = _run(attack)
    found = codes(replies)
    assert "QUOTA_EXCEEDED" in found and set(found) == {"QUOTA_EXCEEDED"}, found
    assert not isinstance(served, ErrorReply), served


# -- connections -------------------------------------------------------------------


def test_connections_per_principal(nodes: dict[str, NodeProcess]) -> None:
    """The 65th connection of one user gets its hello refused QUOTA_EXCEEDED and is closed;
    another user connects; closing one frees a place."""
    proc = nodes["connections"]
    watch = Watch(proc, "connections")
    token = admit_user(proc)

    async def attack() -> tuple[Any, Any, Any]:
        raws = await _connections(proc, token, 64)
        assert all(isinstance(raw.greeting, HelloReply) for raw in raws)
        extra = await Raw.open(proc, as_user(token, proc))
        await asyncio.wait_for(extra.ws.wait_closed(), 10)
        closed = extra.ws.close_code
        await raws[0].close()
        again = None
        for _ in range(200):  # the node counts a close once it has seen it
            again = await Raw.open(proc, as_user(token, proc))
            if isinstance(again.greeting, HelloReply):
                break
            await again.close()
            await asyncio.sleep(0.05)
        assert again is not None
        await again.close()
        await _close(raws[1:])
        return extra.greeting, closed, again.greeting

    refused, closed, again = _run(attack)
    watch.check(0)
    assert isinstance(refused, ErrorReply) and refused.code == "QUOTA_EXCEEDED", refused
    assert "at most 64 connections" in refused.message
    assert closed == 1008, closed  # and the connection was closed
    assert isinstance(again, HelloReply), again
