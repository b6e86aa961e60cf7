"""The owner's training policy over real node processes (TLS, tokens): enforced whatever the client asks.

A gateway; ``alpha`` (one dataset, its policy from the node's flags); three
owners whose flags make their datasets secure-aggregation-only with at
least 3 owners; ``charlie``, a trainer node that is also the crypto
provider.  Each owner holds a third of sklearn's breast cancer.  The
restart test starts its own owner.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

import node
from node.client.fl.jobs import DatasetPointer
from node.fl import FedAvg, Hyperparameters, RoundFailed
from node.fl.spec import model_to_spec
from node.fl.wire import TrainTask, train_request
from node.server.fl.audit import AUDIT_FILE, AuditOutcome, read_audit
from node.server.fl.guard import LEDGER_FILE
from protocol.errors import PermissionDenied, TesseraError
from protocol.federated import TrainReply
from protocol.records import DatasetSummary
from tests.support import ROOT, NodeProcess, node_env, start_gateway, start_node

TAG = "#policy_test"
ALPHA_FLAGS = ("--dp-epsilon", "6", "--dp-noise", "1.5", "--dp-clip", "2", "--min-batch", "20",
               "--min-samples", "100", "--max-model-elements", "500", "--allowed-layers", "Linear,ReLU,Sigmoid")
SECURE_FLAGS = ("--secure-aggregation-min-owners", "3")


def _write_thirds(directory: Path) -> list[Path]:
    bunch = load_breast_cancer()
    x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    paths = []
    for index, rows in enumerate(np.array_split(np.arange(len(x)), 3)):
        path = directory / f"third_{index}.csv"
        np.savetxt(path, np.column_stack([x[rows], bunch.target[rows]]), delimiter=",", header=header,
                   comments="", fmt="%.17g")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("policy")
    paths = _write_thirds(tmp)
    gateway = start_gateway(tmp, "--heartbeat-seconds", "0.3")
    join = ("--gateway", gateway.url, "--gateway-cafile", str(gateway.cafile), "--tag", TAG)
    data = ("--dataset-label", "target")
    jobs: list[tuple[Any, ...]] = [(start_node, tmp, "alpha", *join, "--dataset", f"cancer={paths[0]}", *data,
                                    *ALPHA_FLAGS)]
    jobs += [(start_node, tmp, f"secure_{i}", "--dataset", f"cancer={path}", *data, *SECURE_FLAGS)
             for i, path in enumerate(paths)]
    jobs.append((start_node, tmp, "charlie", "--role", "trainer"))
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        procs: list[NodeProcess] = list(pool.map(lambda job: job[0](*job[1:]), jobs))
    grid = node.Gateway(gateway.url, cafile=gateway.cafile)
    try:
        yield {"alpha": procs[0], "secure": procs[1:4], "charlie": procs[4], "grid": grid, "paths": paths,
               "tmp": tmp}
    finally:
        grid.close()
        for proc in procs:
            proc.stop()
        gateway.stop()
        for proc in procs:
            assert "Traceback" not in proc.stderr(), proc.stderr()


def _pointer(proc: NodeProcess, dataset: str = "cancer") -> DatasetPointer:
    summary = DatasetSummary(dataset, (), "", (190, 30), 190)
    return DatasetPointer(proc.node_id, proc.url, proc.fingerprint, summary,
                          lambda: node.connect(proc.url, cafile=proc.cafile))


def _train(handle: Any, model: torch.nn.Sequential, **hyper: Any) -> TrainReply:
    """A raw ``train`` request, built by hand: no client-side check stands between it and the owner."""
    spec, state = model_to_spec(model)
    settings = {"lr": 0.1, "batch_size": 32, "loss": "bce_with_logits", **hyper}
    task = TrainTask.create(spec, state, Hyperparameters(**settings), 0, 0, 0)
    reply = handle.call(lambda rid: train_request(rid, "cancer", task), TrainReply, "train")
    assert isinstance(reply, TrainReply)
    return reply


def _refused(handle: Any, model: torch.nn.Sequential, rule: str, **hyper: Any) -> None:
    with pytest.raises(PermissionDenied) as caught:
        _train(handle, model, **hyper)
    assert caught.value.details.get("rule") == rule, caught.value
    assert rule in caught.value.message


def _linear() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 1))


def test_flags_are_announced_and_each_rule_is_enforced_whatever_the_client_asks(network: dict[str, Any]) -> None:
    """alpha's flags: the gateway shows them; raw train requests breaking each rule are refused; a fitting
    one trains with DP and says what it charged."""
    grid = network["grid"]
    for _ in range(200):
        pointers = grid.datasets(TAG)
        if pointers:
            break
        time.sleep(0.05)
    (pointer,) = pointers
    policy = pointer.policy
    assert policy is not None and policy.dp and (policy.epsilon, policy.noise_multiplier, policy.max_grad_norm) == (
        6.0, 1.5, 2.0)
    assert policy.epsilon_remaining == 6.0 and policy.delta == 1e-5
    assert (policy.min_batch, policy.min_samples, policy.max_model_elements) == (20, 100, 500)
    assert policy.allowed_layers == ("Linear", "ReLU", "Sigmoid") and policy.secure_min_owners == 0
    assert "DP epsilon 6 of 6 left" in repr(pointer) and "min batch 20" in repr(pointer)
    alpha = node.connect(network["alpha"].url, cafile=network["alpha"].cafile)
    try:
        _refused(alpha, _linear(), "min_batch", batch_size=8)
        _refused(alpha, torch.nn.Sequential(torch.nn.Linear(30, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)),
                 "allowed_layers")
        _refused(alpha, torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)),
                 "max_model_elements")
        reply = _train(alpha, _linear())
        assert reply.epsilon is not None and reply.epsilon > 0
        assert reply.epsilon_remaining == pytest.approx(6.0 - reply.epsilon)
        assert reply.samples == 152 and reply.train_loss == 0.0 and reply.heldout is None  # DP: state only
    finally:
        alpha.close()
    entries = list(read_audit(network["alpha"].state_dir / AUDIT_FILE))
    assert [(e.outcome, e.reason) for e in entries[:4]] == [
        (AuditOutcome.REFUSED, "min_batch"), (AuditOutcome.REFUSED, "allowed_layers"),
        (AuditOutcome.REFUSED, "max_model_elements"), (AuditOutcome.TRAINED, None),
    ]
    assert entries[3].epsilon == pytest.approx(reply.epsilon) and entries[3].principal == "user:tester"
    for _ in range(300):  # the node re-announces its record once a charge changed it
        (pointer,) = grid.datasets(TAG)
        assert pointer.policy is not None
        if pointer.policy.epsilon_remaining != 6.0:
            break
        time.sleep(0.05)
    assert pointer.policy.epsilon_remaining is not None
    assert pointer.policy.epsilon_remaining <= 6.0 - reply.epsilon + 1e-9


def test_secure_only_datasets_refuse_plain_train_and_sums_of_fewer_than_k_owners(network: dict[str, Any]) -> None:
    """K = 3: a plain job is refused; a secure job over 2 owners fails its round (each owner's own party
    refuses to sum fewer than 3); over 3 owners it trains, with DP, and reports the epsilon spent."""
    owners = network["secure"]
    pointers = [_pointer(p) for p in owners]
    charlie = node.connect(network["charlie"].url, cafile=network["charlie"].cafile)
    try:
        plain = FedAvg(_linear(), pointers, rounds=1, loss="bce_with_logits", progress=False)
        with pytest.raises(PermissionDenied, match="secure_aggregation_min_owners"):
            plain.fit()
        two = FedAvg(_linear(), pointers[:2], rounds=1, loss="bce_with_logits", secure_aggregation=True,
                     crypto_provider=charlie, progress=False)
        with pytest.raises(TesseraError) as caught:
            two.fit()
        assert isinstance(caught.value, (RoundFailed, PermissionDenied))
        assert "secure_aggregation_min_owners" in caught.value.message
        assert len(two.history) == 0
        three = FedAvg(_linear(), pointers, rounds=2, loss="bce_with_logits", secure_aggregation=True,
                       crypto_provider=charlie, progress=False)
        history = three.fit()
    finally:
        charlie.close()
    assert [r.participants for r in history] == [(0, 1, 2)] * 2
    epsilon = history.epsilon
    assert epsilon[0] is not None and epsilon[1] is not None and 0 < epsilon[0] < epsilon[1]
    assert [len(r.privacy) for r in history] == [3, 3]
    audit = list(read_audit(owners[0].state_dir / AUDIT_FILE))
    assert [e.outcome for e in audit] == [AuditOutcome.REFUSED, AuditOutcome.TRAINED, AuditOutcome.TRAINED,
                                          AuditOutcome.TRAINED]
    assert audit[0].reason == "secure_aggregation_min_owners"
    assert all(e.secure for e in audit[1:]) and len({e.job_id for e in audit[1:]}) == 2


def test_trainer_jobs_meet_the_same_policy_and_are_audited_with_their_job_id(network: dict[str, Any]) -> None:
    """A job on a trainer node reaches alpha as its train: refused for its batch size, then trained, each
    audited under the trainer node's principal and the job id the client got."""
    trainer = node.connect(network["charlie"].url, cafile=network["charlie"].cafile)
    try:
        small = FedAvg(_linear(), [_pointer(network["alpha"])], rounds=1, batch_size=8, progress=False)
        refused = trainer.fit(small)
        with pytest.raises(PermissionDenied, match="min_batch"):
            refused.wait(timeout=60, progress=False)
        good = FedAvg(_linear(), [_pointer(network["alpha"])], rounds=1, batch_size=32, progress=False)
        done = trainer.fit(good)
        history = done.wait(timeout=60, progress=False)
    finally:
        trainer.close()
    assert history.epsilon[0] is not None and history.epsilon[0] > 0
    entries = [e for e in read_audit(network["alpha"].state_dir / AUDIT_FILE) if e.principal.startswith("node:")]
    assert [(e.job_id, e.outcome) for e in entries] == [
        (refused.job_id, AuditOutcome.REFUSED), (done.job_id, AuditOutcome.TRAINED),
    ]
    assert entries[0].principal.startswith("node:charlie@")


def _audit_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "audit", "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, env=node_env(state_dir.parent), cwd=ROOT, timeout=120)


def test_the_budget_persists_across_a_restart_and_refuses_past_it(network: dict[str, Any], tmp_path: Path) -> None:
    """Spent epsilon is on disk (0600) before the reply; a restarted node continues from it and refuses
    the training that would pass the budget; the audit trail spans both runs and the CLI reads it."""
    state = tmp_path / "state" / "delta"
    flags = ("--dataset", f"cancer={network['paths'][1]}", "--dataset-label", "target", "--dp-epsilon", "6")
    first = start_node(tmp_path, "delta", *flags, state_dir=state)
    try:
        handle = node.connect(first.url, cafile=first.cafile)
        spent = _train(handle, _linear(), batch_size=152)  # one full-batch step
        handle.close()
    finally:
        assert first.stop() == 0, first.stderr()
    assert stat.S_IMODE((state / LEDGER_FILE).stat().st_mode) == 0o600
    assert spent.epsilon is not None and spent.epsilon_remaining is not None
    second = start_node(tmp_path, "delta", *flags, state_dir=state)
    try:
        handle = node.connect(second.url, cafile=second.cafile)
        with pytest.raises(PermissionDenied, match="privacy budget of dataset 'cancer' exhausted") as caught:
            _train(handle, _linear(), batch_size=152)
        assert caught.value.details["spent"] == pytest.approx(spent.epsilon)
        assert caught.value.details["budget"] == 6.0
        handle.close()
    finally:
        assert second.stop() == 0, second.stderr()
    listing = _audit_cli(state)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split("\t") for line in listing.stdout.splitlines()[1:]]
    assert [row[-1] for row in rows] == ["trained", "refused:epsilon"]
    dumped = [json.loads(line) for line in _audit_cli(state, "--json", "--last", "1").stdout.splitlines()]
    assert dumped[0]["outcome"] == "refused" and dumped[0]["epsilon"] is None
    assert stat.S_IMODE((state / AUDIT_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("args, message", [
    (("--dp-epsilon", "0"), "--dp-epsilon: must be a number in (0, 1e+06]"),
    (("--no-dp", "--dp-noise", "2"), "--dp-noise: does not apply when dp is false"),
    (("--secure-aggregation-min-owners", "1"), "--secure-aggregation-min-owners: must be 0"),
    (("--allowed-layers", "Linear,Lambda"), "--allowed-layers: unknown layer 'Lambda'"),
    (("--dataset-policy", "other=x.toml"), "--dataset-policy other: no --dataset of that name"),
    (("--dataset-policy", "no-equals-sign"), "--dataset-policy: policy spec 'no-equals-sign': expected NAME=PATH"),
])
def test_bad_policy_flags_stop_the_node_with_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """A bad policy value is one line on stderr and a non-zero exit, before the node starts."""
    (tmp_path / "d.csv").write_text("a,label\n1,0\n")
    result = subprocess.run(
        [sys.executable, "-m", "node", "--id", "x", "--port", "0", "--state-dir", str(tmp_path / "s"),
         "--dataset", f"d={tmp_path / 'd.csv'}", *args],
        capture_output=True, text=True, env=node_env(tmp_path), cwd=ROOT, timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not os.path.exists(tmp_path / "s" / LEDGER_FILE)
