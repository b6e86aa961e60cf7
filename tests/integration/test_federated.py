"""Federated learning over real node processes, TLS and authentication on.

A gateway, three hospitals (a third of sklearn's breast cancer each, as CSV)
and a trainer node, shared by the module; the dropout tests start their own
owners.  Numerics are checked bit for bit against ``node.fl.plain_fedavg``.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
from pathlib import Path
from typing import Any, Iterator, MutableMapping

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

import node
from node.client.fl.jobs import DatasetPointer
from node.fl import (
    FedAvg,
    HyperparameterError,
    Hyperparameters,
    IncompatibleData,
    JobError,
    RoundFailed,
    load_dataset,
    plain_fedavg,
)
from protocol.errors import BadRequest, NotFound, OpFailed, PermissionDenied
from protocol.records import DatasetSummary
from tests.support import GatewayProcess, NodeProcess, admit, start_gateway, start_node

TAG = "#breast_cancer"
ROUNDS = 3
NO_DP = ("--no-dp",)
"""These owners train without DP-SGD (the operator's explicit choice): FedAvg's own numbers are checked
bit for bit against plain_fedavg; the policies themselves are tests/integration/test_training_policy.py's."""


def _write_thirds(directory: Path, parts: int = 3) -> list[Path]:
    bunch = load_breast_cancer()
    x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    paths = []
    for index, rows in enumerate(np.array_split(np.arange(len(x)), parts)):
        path = directory / f"hospital_{index}.csv"
        table = np.column_stack([x[rows], bunch.target[rows]])
        np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.17g")
        paths.append(path)
    return paths


def _start_all(jobs: list[tuple[Any, ...]]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job[0](*job[1:]), jobs))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("federated")
    paths = _write_thirds(tmp)
    gateway = start_gateway(tmp)
    join = ("--gateway", gateway.url, "--gateway-cafile", str(gateway.cafile))
    owners: list[NodeProcess] = _start_all([
        (start_node, tmp, f"hospital_{i}", *join, "--dataset", f"breast_cancer={path}",
         "--dataset-label", "target", "--tag", TAG, *NO_DP)
        for i, path in enumerate(paths)
    ] + [(start_node, tmp, "trainer", *join, "--role", "trainer")])
    grid = node.Gateway(gateway.url, cafile=gateway.cafile)
    try:
        yield {"gateway": gateway, "owners": owners[:3], "trainer": owners[3], "paths": paths, "grid": grid, "tmp": tmp}
    finally:
        grid.close()
        for proc in owners:
            proc.stop()
        gateway.stop()


def _pointers(grid: node.Gateway, count: int = 3) -> list[DatasetPointer]:
    for _ in range(100):  # registrations race the first search
        found = sorted(grid.datasets(TAG), key=lambda p: p.node_id)
        if len(found) == count:
            return found
        import time
        time.sleep(0.05)
    raise AssertionError(f"expected {count} datasets, found {grid.datasets(TAG)}")


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def _reference(paths: list[Path], model: torch.nn.Sequential, rounds: int, seed: int = 3) -> Any:
    owners = []
    for path in paths:
        dataset = load_dataset("breast_cancer", path, label_column="target")
        owners.append((dataset.features, dataset.labels))
    hyper = Hyperparameters(0.1, 1, 32, "sgd", "bce_with_logits", seed)  # type: ignore[arg-type]
    return plain_fedavg(model, owners, hyper, rounds)


def _assert_same_state(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(ours) == list(reference)
    for key in ours:
        assert torch.equal(ours[key], reference[key]), key


def test_search_finds_one_pointer_per_hospital_whose_rows_cannot_be_read(network: dict[str, Any]) -> None:
    """grid.datasets/search give dataset pointers with shapes; the rows compute but never come back."""
    pointers = _pointers(network["grid"])
    assert [p.node_id for p in pointers] == ["hospital_0", "hospital_1", "hospital_2"]
    assert [p.shape for p in pointers] == [(190, 30), (190, 30), (189, 30)]
    matches = network["grid"].search("breast_cancer")
    assert sum(len(m.dataset_pointers) for m in matches) == 3
    rows = pointers[0].features()
    with pytest.raises(PermissionDenied):
        rows.get()
    with pytest.raises(PermissionDenied):
        pointers[0].labels().get()
    with pytest.raises(PermissionDenied):
        (rows.sum(0) * 1).get()  # derived values are as private as the rows
    assert rows.shape == (190, 30)


def test_fedavg_over_node_processes_equals_plain_fedavg_bit_for_bit(network: dict[str, Any]) -> None:
    """Three owners, three rounds: the global model and losses equal plain_fedavg's exactly."""
    model = _model()
    job = FedAvg(model, network["grid"].search(TAG), rounds=ROUNDS, lr=0.1, loss="bce_with_logits",
                 seed=3, progress=False)
    history = job.fit()
    reference = _reference(network["paths"], model, ROUNDS)
    _assert_same_state(job.state, reference.state)
    assert tuple(history.train_loss) == reference.train_losses
    assert [r.participants for r in history] == [(0, 1, 2)] * ROUNDS
    assert all(r.heldout is not None and r.heldout.samples == 114 for r in history)
    assert history.accuracy[-1] is not None and history.accuracy[-1] > 0.8


def test_bad_jobs_fail_before_any_round(network: dict[str, Any]) -> None:
    """Nothing found, wrong input size, unknown loss/optimizer, mismatched shapes, secure aggregation
    without a crypto provider or over a single dataset."""
    grid = network["grid"]
    pointers = _pointers(grid)
    with pytest.raises(JobError, match="matched nothing"):
        FedAvg(_model(), grid.datasets("#no_such_tag"), progress=False)
    with pytest.raises(IncompatibleData, match="cannot take samples"):
        FedAvg(torch.nn.Sequential(torch.nn.Linear(4, 1)), pointers, progress=False)
    with pytest.raises(HyperparameterError, match="unknown loss"):
        FedAvg(_model(), pointers, loss="hinge", progress=False)
    with pytest.raises(HyperparameterError, match="unknown optimizer"):
        FedAvg(_model(), pointers, optimizer="lbfgs", progress=False)
    other = DatasetPointer("x", pointers[0].url, pointers[0].fingerprint, DatasetSummary("d", (), "", (10, 4), 10),
                           lambda: pytest.fail("must not connect"))
    with pytest.raises(JobError, match="different feature shapes"):
        FedAvg(_model(), [*pointers, other], progress=False)
    with pytest.raises(JobError, match="needs a crypto_provider"):
        FedAvg(_model(), pointers, secure_aggregation=True, progress=False)
    with pytest.raises(JobError, match="at least 2 datasets"):
        FedAvg(_model(), pointers[:1], secure_aggregation=True, crypto_provider=pointers[1].node(), progress=False)


def test_owner_refusing_the_task_fails_the_job(network: dict[str, Any]) -> None:
    """Labels that do not fit the loss fail the job (not a dropout), and the label range stays home.

    The owner's own message would name the private labels' range; like every
    failure of a request that touched a private dataset it is withheld
    (peer/server/redaction.py).
    """
    model = torch.nn.Sequential(torch.nn.Linear(30, 1))
    job = FedAvg(model, _pointers(network["grid"]), rounds=2, loss="cross_entropy", progress=False)
    with pytest.raises(OpFailed, match="details withheld") as caught:
        job.fit()
    assert "range" not in str(caught.value) and "[0, 1]" not in str(caught.value)
    assert len(job.history) == 0


def test_trainer_node_runs_the_job_while_the_client_is_away(network: dict[str, Any]) -> None:
    """Submit to a trainer node, disconnect, reconnect by job id: same bits as plain FedAvg."""
    grid = network["grid"]
    model = _model()
    job = FedAvg(model, _pointers(grid), rounds=ROUNDS, lr=0.1, seed=3, progress=False)
    trainer = grid.connect("trainer")
    job_id = trainer.fit(job).job_id
    trainer.close()
    again = grid.connect("trainer")
    try:
        history = again.job(job_id, job).wait(timeout=60, progress=False)
        reference = _reference(network["paths"], model, ROUNDS)
        _assert_same_state(job.state, reference.state)
        assert tuple(history.train_loss) == reference.train_losses
        stranger = node.connect(network["trainer"].url, cafile=network["trainer"].cafile,
                                token=admit(network["trainer"].state_dir, "stranger"))
        with pytest.raises(NotFound):
            stranger.job(job_id).status()
        stranger.close()
    finally:
        again.close()
    owner = grid.connect("hospital_0")
    try:
        with pytest.raises(BadRequest, match="--role trainer"):
            owner.fit(job)
    finally:
        owner.close()


class _KillOnSend:
    """A dataset whose owner process is SIGKILLed right after round ``at_round``'s task is sent."""

    def __init__(self, pointer: DatasetPointer, process: NodeProcess, at_round: int) -> None:
        self.pointer = pointer
        self.process = process
        self.at_round = at_round
        self.ref = pointer.ref

    def participant(self, links: MutableMapping[str, Any]) -> Any:
        inner = self.pointer.participant(links)
        outer = self

        class Participant:
            def train(self, task: Any) -> Any:
                future = inner.train(task)
                if task.round == outer.at_round and outer.process.process.poll() is None:
                    os.kill(outer.process.process.pid, signal.SIGKILL)
                return future

        return Participant()


def test_owner_killed_mid_round_is_dropped_and_min_participants_is_enforced(
    network: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL during round 1: the round goes on without it (history says why); later a
    job needing every owner fails its first round with RoundFailed, model unchanged."""
    paths = _write_thirds(tmp_path)
    big = tmp_path / "big.npz"  # the victim trains long enough to die mid-round
    generator = np.random.default_rng(0)
    np.savez(big, x=generator.standard_normal((20000, 30)).astype(np.float32),
             y=generator.integers(0, 2, 20000))
    sources = [f"a={paths[0]}", f"b={paths[1]}", f"big={big}"]
    procs: list[NodeProcess] = _start_all([
        (start_node, tmp_path, f"owner_{i}", "--dataset", source, "--dataset-label", "target", *NO_DP)
        for i, source in enumerate(sources)
    ])
    try:
        pointers = [
            DatasetPointer(p.node_id, p.url, p.fingerprint, DatasetSummary(s.split("=")[0], (), "", (100, 30), 100),
                           lambda p=p: node.connect(p.url, fingerprint=p.fingerprint))
            for p, s in zip(procs, sources)
        ]
        datasets = [*pointers[:2], _KillOnSend(pointers[2], procs[2], at_round=1)]
        job = FedAvg(_model(), datasets, rounds=3, min_participants=2, round_timeout=20, progress=False)
        history = job.fit()
        assert [r.participants for r in history] == [(0, 1, 2), (0, 1), (0, 1)]
        assert [d.owner for d in history[1].dropped] == [2]
        assert "lost" in history[1].dropped[0].reason or "reach" in history[1].dropped[0].reason
        assert history.dropped[-1][:2] == (2, 2)

        strict = FedAvg(_model(), pointers, rounds=2, min_participants=3, round_timeout=20, progress=False)
        before = {k: v.clone() for k, v in strict.state.items()}
        with pytest.raises(RoundFailed, match="round 0 failed: 2 of the required 3"):
            strict.fit()
        assert len(strict.history) == 0
        _assert_same_state(strict.state, before)
    finally:
        for proc in procs:
            proc.stop()
