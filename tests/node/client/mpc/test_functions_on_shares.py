"""Comparisons and approximations on real shares, between in-process nodes over TLS.

Four NodeServers in this process (bob, alice, dave: parties; charlie: the
crypto provider) with the network token, so node-to-node links are real
pinned TLS links; 2 parties compare by function secret sharing, 3 by
arithmetic-to-binary conversion.  Every result is checked against torch:
comparisons, indices and one-hots exactly (with their dtypes), values
within bounds derived from 16-bit fixed point (a few units of 2^-16 for
comparisons; the approximations' own bounds plus the fixed-point error
stated in the README).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from node.client.mpc.group import MixedParties, PrecisionMismatch
from tests.node.mpc_cluster import Cluster, client, cluster  # noqa: F401 (fixture)

ULP = 2.0**-16
X = torch.tensor([[-3.5, 0.25, 2.0, 2.0, -0.75], [7.0, -1.5, 0.0, 4.5, 4.5]])
Y = torch.tensor([[-3.5, 1.0, -2.0, 3.0, -0.5], [6.0, -1.5, 0.5, 4.5, 5.0]])
IMAGE = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5).remainder(7.0) - 3.0


@pytest.mark.parametrize("n", [2, 3])
async def test_comparisons_match_torch(cluster: Cluster, n: int) -> None:
    """Bits are bool and exact; max/min give torch's values and int64 indices; argmax a one-hot; pooling torch's."""

    def run() -> dict[str, Any]:
        x, y = cluster.share(X, n), cluster.share(Y, n)
        posted = {
            "gt": x > y, "ge": x >= y, "lt": x < y, "le": torch.le(x, y), "gt_public": x > 0.5,
            "reflected": 0.5 < x, "tensor_gt": Y > x,
            "sign": torch.sign(x), "abs": abs(x), "relu": F.relu(x), "clamp": torch.clamp(x, -1.0, 2.5),
            "where": torch.where(x > y, x, y), "maximum": torch.max(x, y),
            "where_public": torch.where(x > y, 1.5, -0.25), "clamp_shared": x.clamp(min=y),
            "max": x.max(), "max_dim": torch.max(x, dim=1), "min_dim": x.min(0, keepdim=True),
            "argmax": torch.argmax(x, dim=1), "argmin": x.argmin(), "pool": F.max_pool2d(cluster.share(IMAGE, n), 3, 2, 1),
        }
        out: dict[str, Any] = {}
        for name, value in posted.items():
            out[name] = tuple(v.get() for v in value) if isinstance(value, tuple) else value.get()
        return out

    got = await client(run)
    for name, expected in (("gt", X > Y), ("ge", X >= Y), ("lt", X < Y), ("le", X <= Y), ("gt_public", X > 0.5),
                           ("reflected", X > 0.5), ("tensor_gt", Y > X)):
        assert got[name].dtype == torch.bool and torch.equal(got[name], expected), name
    for name, expected in (("sign", torch.sign(X)), ("abs", X.abs()), ("relu", X.relu()),
                           ("clamp", X.clamp(-1.0, 2.5)), ("where", torch.where(X > Y, X, Y)),
                           ("maximum", torch.max(X, Y)), ("max", X.max()),
                           ("where_public", torch.where(X > Y, 1.5, -0.25)), ("clamp_shared", torch.max(X, Y)),
                           ("pool", F.max_pool2d(IMAGE, 3, 2, 1))):
        assert got[name].dtype == torch.float32 and torch.allclose(got[name], expected, atol=2 * ULP), name
    values, indices = got["max_dim"]
    assert torch.allclose(values, X.max(1).values, atol=ULP) and indices.dtype == torch.int64
    assert torch.equal(indices, X.max(1).indices)  # ties (2.0, 2.0 and 4.5, 4.5) go to the lowest index
    values, indices = got["min_dim"]
    assert torch.allclose(values, X.min(0, keepdim=True).values, atol=ULP)
    assert torch.equal(indices, X.min(0, keepdim=True).indices)
    assert got["argmax"].dtype == torch.int64
    assert torch.equal(got["argmax"], F.one_hot(X.argmax(1), 5))
    assert torch.equal(got["argmin"], F.one_hot(X.argmin(), X.numel()).reshape(X.shape))


LOGITS = torch.tensor([[2.0, -1.0, 0.5, 3.0], [-4.0, 6.0, 1.0, -2.0], [0.0, 0.0, 0.0, 0.0]])
TARGET = torch.tensor([3, 1, 2])
POSITIVE = torch.tensor([0.05, 0.5, 1.0, 3.0, 40.0, 120.0])
REALS = torch.tensor([-9.0, -2.0, -0.5, 0.0, 0.7, 3.0, 12.0])


@pytest.mark.parametrize("n", [2, 3])
async def test_approximations_on_shares_match_torch(cluster: Cluster, n: int) -> None:
    """exp, reciprocal, x / y, sqrt, log, sigmoid, tanh, softmax, log_softmax and cross_entropy within bounds."""

    def run() -> dict[str, torch.Tensor]:
        pos, reals, logits = cluster.share(POSITIVE, n), cluster.share(REALS, n), cluster.share(LOGITS, n)
        hot = cluster.share(F.one_hot(TARGET, 4).to(torch.int64), n)
        indices = cluster.share(TARGET, n)
        posted = {
            "exp": torch.exp(reals * 0.5), "reciprocal": torch.reciprocal(pos), "negative": (-pos).reciprocal(),
            "div": reals[:6] / pos, "rdiv": 2.0 / pos, "sqrt": torch.sqrt(pos), "rsqrt": torch.rsqrt(pos),
            "log": torch.log(pos), "sigmoid": torch.sigmoid(reals), "tanh": torch.tanh(reals),
            "softmax": F.softmax(logits, dim=1), "log_softmax": F.log_softmax(logits, dim=1),
            "ce": F.cross_entropy(logits, TARGET), "ce_hot": F.cross_entropy(logits, hot),
            "ce_indices": F.cross_entropy(logits, indices, reduction="sum"),
        }
        return {name: value.get() for name, value in posted.items()}

    got = await client(run)

    def close(name: str, expected: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
        value = got[name]
        assert value.dtype == torch.float32, name
        assert torch.allclose(value, expected, atol=atol, rtol=rtol), (name, value, expected)

    close("exp", torch.exp(REALS * 0.5), 1e-3, 1e-3)
    close("reciprocal", 1 / POSITIVE, 1e-3, 2e-3)
    close("negative", -1 / POSITIVE, 1e-3, 2e-3)
    close("div", REALS[:6] / POSITIVE, 1e-3, 2e-3)
    close("rdiv", 2.0 / POSITIVE, 2e-3, 2e-3)
    close("sqrt", POSITIVE.sqrt(), 1e-3, 1e-3)
    close("rsqrt", POSITIVE.rsqrt(), 1e-3, 1e-3)
    close("log", POSITIVE.log(), 2e-3)
    close("sigmoid", torch.sigmoid(REALS), 1e-3)
    close("tanh", torch.tanh(REALS), 2e-3)
    close("softmax", F.softmax(LOGITS, dim=1), 1e-3)
    close("log_softmax", F.log_softmax(LOGITS, dim=1), 2e-3)
    close("ce", F.cross_entropy(LOGITS, TARGET), 2e-3)
    close("ce_hot", F.cross_entropy(LOGITS, TARGET), 2e-3)
    close("ce_indices", F.cross_entropy(LOGITS, TARGET, reduction="sum"), 6e-3)


async def test_mixed_parties_and_precisions_are_refused(cluster: Cluster) -> None:
    """x > y across party sets raises MixedParties; across precisions (16 vs 8 bits) PrecisionMismatch."""

    def run() -> list[type[BaseException]]:
        x = cluster.share(X, 2)
        caught: list[type[BaseException]] = []
        for other in (cluster.share(Y, 3), cluster.share(Y, 2, precision=8)):
            for op in (lambda a, b: a > b, lambda a, b: torch.max(a, b), lambda a, b: torch.where(a > 0, a, b)):
                try:
                    op(x, other)
                except (MixedParties, PrecisionMismatch) as exc:
                    caught.append(type(exc))
        return caught

    assert await client(run) == [MixedParties] * 3 + [PrecisionMismatch] * 3
