"""The encrypted-training example, shortened, over real node processes and TLS.

Two epochs of ``examples/encrypted_training.py`` on 256 training rows (16
steps): alice holds the rows and shares them, bob is the second party and
charlie the crypto provider.  The result is compared with the same code in
plaintext: accuracy within 2 points of the exact sigmoid, and weights within
a bound derived from the precision of the polynomial run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

import node
from examples.encrypted_inference import infer_encrypted
from examples.encrypted_training import (
    Parties,
    SigmoidPolynomial,
    accuracy,
    epoch_orders,
    exact_sigmoid,
    load_data,
    slices,
    train_encrypted,
    train_plain,
)
from tests.support import NodeProcess, start_node

ULP = 2.0**-16
STEP_ERROR_ULPS = 8
"""Per step: 5 truncations of at most 1 ulp each, plus encoding of the public
coefficients and of 10 lr / B, carried into the weights by gradients whose
rows have norm below 1 (the design matrix is scaled by 1/10)."""


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parties]:
    tmp: Path = tmp_path_factory.mktemp("encrypted-training")
    procs: list[NodeProcess] = [
        start_node(tmp, "alice", "--role", "data_owner"),
        start_node(tmp, "bob"),
        start_node(tmp, "charlie", "--role", "crypto_provider"),
    ]
    handles = [node.connect(p.url, cafile=p.cafile) for p in procs]
    yield Parties(*handles)
    for handle in handles:
        handle.close()
    for proc in procs:
        proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.stderr(), proc.stderr()


def test_encrypted_training_matches_plaintext(parties: Parties) -> None:
    """Shared training ends within 2 accuracy points of plaintext, weights within the precision bound."""
    data = load_data(subset=256)
    poly = SigmoidPolynomial.fit()
    epochs = epoch_orders(len(data.x_train), 2)
    steps = len(epochs) * len(slices(len(data.x_train)))
    run = train_encrypted(parties, data, epochs, poly)
    inference = infer_encrypted(parties, run.weights, data)
    model = run.weights.get()
    exact = train_plain(data, epochs, exact_sigmoid)
    approx = train_plain(data, epochs, poly)
    gap = abs(accuracy(model, data.x_test, data.y_test) - accuracy(exact, data.x_test, data.y_test))
    assert gap <= 0.02
    assert float((model - approx).abs().max()) <= steps * STEP_ERROR_ULPS * ULP
    plain_logits = data.x_test @ model
    assert torch.equal(inference.logits > 0, plain_logits > 0)
    assert float((inference.logits - plain_logits).abs().max()) <= data.x_test.shape[1] * 4 * ULP
