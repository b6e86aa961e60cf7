"""Secure aggregation over real node processes, TLS and authentication on.

Three hospitals (a third of sklearn's breast cancer each), a crypto provider
and a trainer node.  Every secure round is compared with plain FedAvg of the
owners' updates recomputed here with ``train_locally`` from the same global
state and seeds, within the encoding's bound (``node.fl.secure``), and every
frame the client (or the trainer node) receives is checked to carry no
owner's update, encoded update, or share that adds up to one.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, MutableMapping

import numpy as np
import pytest
import torch

import node
from peer.client.sync_channel import SyncChannel
from node.client.fl.jobs import DatasetPointer
from node.fl import AggregationFailed, FedAvg, Hyperparameters, load_dataset, model_to_spec, owner_seed
from node.fl.aggregate import fedavg
from node.fl.local import train_locally
from node.fl.secure import average_error_bound, decode_average, encode_update, reconstruct_sum
from node.fl.wire import TrainTask, train_request
from protocol.codec import decode_message
from protocol.errors import BadRequest, NotFound, PermissionDenied
from protocol.federated import TrainReply, TrainRequest
from protocol.ids import NodeId
from protocol.messages import AckReply, Message
from protocol.records import DatasetSummary
from protocol.secagg import (
    DEFAULT_SECAGG_PRECISION,
    AggregationParty,
    SecaggSetupRequest,
    SecaggShareRequest,
    SecaggSplitRequest,
    SecaggSumReply,
    SecaggSumRequest,
    SecureTrain,
    ShareSender,
)
from tests.integration.recording_node import read_frames
from tests.integration.test_federated import _write_thirds
from tests.support import ROOT, STARTUP, NodeProcess, admit, admit_test_user, node_env, start_node

ROUNDS = 3
SEED = 5
PRECISION = DEFAULT_SECAGG_PRECISION


def _start_all(jobs: list[tuple[Any, ...]]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job[0](*job[1:]), jobs))


def _start_recording_trainer(tmp: Path, frames: Path) -> NodeProcess:
    """A trainer node whose node-to-node links record every frame they receive."""
    state = tmp / "state" / "trainer"
    admit_test_user(state)
    env = {**node_env(tmp / "home"), "TESSERA_TEST_FRAMES": str(frames)}
    stderr_path = tmp / "trainer.stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.recording_node", "--id", "trainer", "--port", "0",
             "--state-dir", str(state), "--role", "trainer"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT,
        )
    assert process.stdout is not None
    match = STARTUP.match(process.stdout.readline())
    assert match, stderr_path.read_text()
    return NodeProcess("trainer", process, match.group(2), match.group(3), state, stderr_path)


def _pointer(proc: NodeProcess, dataset: str, samples: int = 190) -> DatasetPointer:
    summary = DatasetSummary(dataset, (), "", (samples, 30), samples)
    return DatasetPointer(proc.node_id, proc.url, proc.fingerprint, summary,
                          lambda: node.connect(proc.url, fingerprint=proc.fingerprint))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("secagg")
    paths = _write_thirds(tmp)
    frames = tmp / "trainer.frames"
    procs: list[NodeProcess] = _start_all([
        (start_node, tmp, f"hospital_{i}", "--dataset", f"breast_cancer={path}", "--dataset-label", "target",
         "--no-dp")  # compared with plain FedAvg bit for bit; DP policies: test_training_policy.py
        for i, path in enumerate(paths)
    ] + [(start_node, tmp, "charlie"), (_start_recording_trainer, tmp, frames)])
    try:
        yield {"owners": procs[:3], "charlie": procs[3], "trainer": procs[4], "paths": paths, "frames": frames,
               "tmp": tmp}
    finally:
        for proc in procs:
            proc.stop()
        for proc in procs:
            assert "Traceback" not in proc.stderr(), proc.stderr()


@pytest.fixture
def received() -> Iterator[list[Message]]:
    """Every message the client process receives while the test runs."""
    messages: list[Message] = []
    original = SyncChannel.frame_received

    def recording(self: SyncChannel, data: Any) -> None:
        messages.append(decode_message(bytes(data)))
        original(self, data)

    SyncChannel.frame_received = recording  # type: ignore[method-assign]
    yield messages
    SyncChannel.frame_received = original  # type: ignore[method-assign]


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 1))


def _owner_updates(paths: list[Path], model: torch.nn.Sequential, start: dict[str, torch.Tensor],
                   round_index: int) -> list[tuple[dict[str, torch.Tensor], int, float]]:
    """Each owner's (update, samples, train loss) in one round, recomputed here from its global state."""
    spec, _ = model_to_spec(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the nodes train (--torch-threads 1): the same bits
    owners = []
    try:
        for i, path in enumerate(paths):
            dataset = load_dataset("breast_cancer", path, label_column="target")
            hyper = Hyperparameters(0.1, 1, 32, "sgd", "bce_with_logits",  # type: ignore[arg-type]
                                    owner_seed(SEED, round_index, i))
            result = train_locally(spec, start, dataset, hyper)
            owners.append((dict(result.state), result.samples, result.train_loss))
    finally:
        torch.set_num_threads(threads)
    return owners


def _check_close_to_plain(rounds: Any, states: list[dict[str, torch.Tensor]], losses: list[float]) -> None:
    """Each round's secure state is plain FedAvg of the same updates, within the encoding's bound."""
    for owners, state, loss in zip(rounds, states, losses):
        samples = sum(n for _, n, _ in owners)
        plain = fedavg([u for u, _, _ in owners], [n for _, n, _ in owners])
        bound = average_error_bound(len(owners), samples, PRECISION)
        for key, value in plain.items():
            if value.is_floating_point():
                assert torch.allclose(state[key], value, rtol=2**-23, atol=bound), key
            else:
                assert torch.equal(state[key], value), key
        assert loss == pytest.approx(sum(l * n for _, n, l in owners) / samples, rel=1e-12)


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif hasattr(value, "__slots__"):
        for slot in value.__slots__:
            yield from _tensors(getattr(value, slot))


def _check_no_update_in(messages: list[Message], rounds: Any, parties: int) -> None:
    """No tensor received equals an owner's update or encoded update; no set of sums adds up to one."""
    updates = [u for owners in rounds for u, _, _ in owners]
    encoded = [encode_update(u, n, PRECISION) for owners in rounds for u, n, _ in owners]
    for message in messages:
        assert not isinstance(message, TrainRequest)
        if isinstance(message, TrainReply):
            assert dict(message.state) == {}
        for tensor in _tensors(message):
            for update, ring in zip(updates, encoded):
                for key in update:
                    if tensor.shape == update[key].shape and update[key].numel() > 1:
                        if tensor.is_floating_point():
                            assert not torch.allclose(tensor, update[key].to(tensor.dtype), atol=1e-4), key
                        else:
                            assert not torch.equal(tensor, ring[key]), key
    sums = [m.sum for m in messages if isinstance(m, SecaggSumReply) and m.sum]
    assert len(sums) == parties * len(rounds), "one summed share per party per round"
    for start in range(0, len(sums), parties):
        group = sums[start : start + parties]
        for size in range(1, parties + 1):
            for subset in itertools.combinations(group, size):
                for key in group[0]:
                    total = torch.stack([s[key] for s in subset]).sum(0)
                    assert not any(torch.equal(total, ring[key]) for ring in encoded), key


def test_secure_fedavg_matches_plain_fedavg_and_the_client_never_sees_an_update(
    network: dict[str, Any], received: list[Message]
) -> None:
    """Client-run secure rounds: plain FedAvg within the precision; the client gets metrics and sums only."""
    pointers = [_pointer(p, "breast_cancer") for p in network["owners"]]
    charlie = node.connect(network["charlie"].url, cafile=network["charlie"].cafile)
    model = _model()
    job = FedAvg(model, pointers, rounds=ROUNDS, lr=0.1, seed=SEED, loss="bce_with_logits",
                 secure_aggregation=True, crypto_provider=charlie, progress=False)
    starts = [dict(job.state)]
    history = job.fit(callback=lambda record: starts.append(dict(job.state)))
    charlie.close()
    states = starts[1:]
    assert [r.participants for r in history] == [(0, 1, 2)] * ROUNDS
    rounds = [_owner_updates(network["paths"], model, start, r) for r, start in enumerate(starts[:-1])]
    _check_close_to_plain(rounds, states, history.train_loss)
    assert history.accuracy[-1] is not None and history.accuracy[-1] > 0.8
    _check_no_update_in(received, rounds, parties=4)


def test_trainer_node_runs_a_secure_job_and_never_receives_an_update(network: dict[str, Any]) -> None:
    """A trainer node's secure rounds equal plain FedAvg within the precision; its links got sums only."""
    pointers = [_pointer(p, "breast_cancer") for p in network["owners"]]
    charlie = node.connect(network["charlie"].url, cafile=network["charlie"].cafile)
    trainer = node.connect(network["trainer"].url, cafile=network["trainer"].cafile)
    model = _model()
    job = FedAvg(model, pointers, rounds=ROUNDS, lr=0.1, seed=SEED, secure_aggregation=True,
                 crypto_provider=charlie, progress=False)
    starts = [dict(job.state)]
    try:
        history = trainer.fit(job).wait(timeout=60, progress=False)
    finally:
        trainer.close()
        charlie.close()
    assert [r.participants for r in history] == [(0, 1, 2)] * ROUNDS
    messages = [decode_message(frame) for frame in read_frames(str(network["frames"]))]
    sums = [m.sum for m in messages if isinstance(m, SecaggSumReply) and m.sum]
    rounds = []
    for r in range(ROUNDS):  # the trainer's global states, rebuilt from the sums its links received
        owners = _owner_updates(network["paths"], model, starts[r], r)
        rounds.append(owners)
        total = reconstruct_sum(sums[4 * r : 4 * r + 4])
        starts.append(decode_average(total, starts[r], sum(n for _, n, _ in owners), PRECISION))
    assert all(torch.equal(starts[-1][k], job.state[k]) for k in job.state)
    _check_close_to_plain(rounds, starts[1:], history.train_loss)
    _check_no_update_in(messages, rounds, parties=4)


def test_a_party_refuses_single_owner_sums_strangers_and_shares_from_the_wrong_node(network: dict[str, Any]) -> None:
    """A party sums two or more owners, for the round's principal only, with shares from the named nodes only."""
    owners, charlie_proc = network["owners"], network["charlie"]
    charlie = node.connect(charlie_proc.url, cafile=charlie_proc.cafile)
    impostor = node.connect(owners[2].url, cafile=owners[2].cafile)
    stranger = node.connect(charlie_proc.url, cafile=charlie_proc.cafile, token=admit(charlie_proc.state_dir, "eve"))
    round_id = os.urandom(16)
    try:
        senders = tuple(ShareSender(i, NodeId(p.node_id), p.fingerprint) for i, p in enumerate(owners[:2]))
        charlie.call(lambda rid: SecaggSetupRequest(rid, round_id, senders, 60.0), AckReply, "setup")
        with pytest.raises(PermissionDenied, match="only a node"):
            charlie.call(lambda rid: SecaggShareRequest(rid, round_id, 0, {"w": (2,)}, bytes(16)), AckReply, "share")
        # hospital_2 trains as owner 0 and tries to pass its update off as hospital_0's share.
        impostor_sender = (ShareSender(0, NodeId(owners[2].node_id), owners[2].fingerprint),)
        impostor.call(lambda rid: SecaggSetupRequest(rid, round_id, impostor_sender, 60.0), AckReply, "setup")
        spec, state = model_to_spec(_model())
        hyper = Hyperparameters(0.1, 1, 32, "sgd", "bce_with_logits", 0)  # type: ignore[arg-type]
        task = replace(TrainTask.create(spec, state, hyper, SEED, 0, 0), secure=SecureTrain(round_id, PRECISION))
        reply = impostor.call(lambda rid: train_request(rid, "breast_cancer", task), TrainReply, "train")
        assert dict(reply.state) == {} and reply.samples > 0
        parties = tuple(AggregationParty(NodeId(p.node_id), p.url, p.fingerprint) for p in (charlie_proc, owners[2]))
        with pytest.raises(PermissionDenied, match="expected from 'hospital_0'"):
            impostor.call(lambda rid: SecaggSplitRequest(rid, round_id, 0, parties), AckReply, "split")
        with pytest.raises(BadRequest, match="at least 2 owners"):
            charlie.call(lambda rid: SecaggSumRequest(rid, round_id, (0,), False), SecaggSumReply, "sum")
        with pytest.raises(NotFound):
            stranger.call(lambda rid: SecaggSumRequest(rid, round_id, (0, 1), False), SecaggSumReply, "sum")
        missing = charlie.call(lambda rid: SecaggSumRequest(rid, round_id, (0, 1), False), SecaggSumReply, "sum")
        assert missing.missing == (0, 1) and dict(missing.sum) == {}
    finally:
        for handle in (charlie, impostor, stranger):
            handle.close()


class _KillOnSend:
    """A dataset whose owner process is SIGKILLed right after round ``at_round``'s task is sent."""

    def __init__(self, pointer: DatasetPointer, process: NodeProcess, at_round: int) -> None:
        self.pointer, self.process, self.at_round, self.ref = pointer, process, at_round, pointer.ref

    def participant(self, links: MutableMapping[str, Any]) -> Any:
        inner = self.pointer.participant(links)
        outer = self

        class Participant:
            ref = inner.ref

            def party(self) -> Any:
                return inner.party()

            def train(self, task: Any) -> Any:
                future = inner.train(task)
                if task.round == outer.at_round and outer.process.process.poll() is None:
                    os.kill(outer.process.process.pid, signal.SIGKILL)
                return future

        return Participant()


def test_killed_owner_is_left_out_and_a_killed_crypto_provider_fails_the_round(tmp_path: Path) -> None:
    """SIGKILL an owner mid-round: the secure round goes on without it; SIGKILL the crypto provider:
    AggregationFailed, and the model stays at the last good round."""
    paths = _write_thirds(tmp_path)
    big = tmp_path / "big.npz"  # the victim trains long enough to die mid-round
    generator = np.random.default_rng(0)
    np.savez(big, x=generator.standard_normal((20000, 30)).astype(np.float32), y=generator.integers(0, 2, 20000))
    sources = [f"a={paths[0]}", f"b={paths[1]}", f"big={big}"]
    procs: list[NodeProcess] = _start_all([
        (start_node, tmp_path, f"owner_{i}", "--dataset", source, "--dataset-label", "target", "--no-dp")
        for i, source in enumerate(sources)
    ] + [(start_node, tmp_path, "provider")])
    provider = node.connect(procs[3].url, cafile=procs[3].cafile)
    try:
        pointers = [_pointer(p, s.split("=")[0]) for p, s in zip(procs, sources)]
        datasets = [*pointers[:2], _KillOnSend(pointers[2], procs[2], at_round=1)]
        job = FedAvg(_model(), datasets, rounds=3, min_participants=2, round_timeout=20, progress=False,
                     secure_aggregation=True, crypto_provider=provider)
        history = job.fit()
        assert [r.participants for r in history] == [(0, 1, 2), (0, 1), (0, 1)]
        assert [d.owner for d in history[1].dropped] == [2]

        second = FedAvg(_model(), pointers[:2], rounds=3, round_timeout=20, progress=False,
                        secure_aggregation=True, crypto_provider=provider)
        kept: list[dict[str, torch.Tensor]] = []

        def kill_provider(record: Any) -> None:
            kept.append(dict(second.state))
            os.kill(procs[3].process.pid, signal.SIGKILL)
            procs[3].process.wait()

        with pytest.raises(AggregationFailed, match="round 1 failed: aggregation party provider"):
            second.fit(callback=kill_provider)
        assert len(second.history) == 1
        assert all(torch.equal(second.state[k], kept[0][k]) for k in kept[0])
    finally:
        provider.close()
        for proc in procs:
            proc.stop()
