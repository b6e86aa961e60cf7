"""The node's op table and run_op, checked against plain torch."""

from __future__ import annotations

import operator
from typing import Callable, Mapping, Sequence

import pytest
import torch
import torch.nn.functional as F

from node.server.ops import MAX_ERROR_CHARS, OP_TABLE, estimated_cost, run_op
from protocol.errors import BadRequest, OpFailed, UnsupportedOp
from protocol.ops import OPS, OpForm, result_count

A = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
B = torch.tensor([[0.5, 2.0, -1.0], [3.0, -4.0, 2.0]])
POS = torch.tensor([[0.5, 1.0, 2.0], [4.0, 0.25, 3.0]])
V = torch.tensor([1.0, 2.0, 3.0])
W = torch.tensor([4.0, -5.0, 6.0])
I = torch.tensor([[7, -3, 4], [2, 9, -8]])
J = torch.tensor([[1, 1, 2], [2, 3, 3]])
P = torch.tensor([True, False, True, False])
Q = torch.tensor([True, True, False, False])
ODD = torch.tensor([1.0, float("nan"), float("inf"), -float("inf")])
BATCH = torch.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
IMG = torch.linspace(-2.0, 2.0, 32).reshape(1, 2, 4, 4)
K1 = torch.linspace(-1.0, 1.0, 12).reshape(2, 2, 3)
K2 = torch.linspace(-1.0, 1.0, 36).reshape(2, 2, 3, 3)
WEIGHT = torch.linspace(-1.0, 1.0, 12).reshape(4, 3)
BIAS = torch.tensor([0.1, -0.2, 0.3, 0.0])
LABELS = torch.tensor([2, 0])
IDX = torch.tensor([2, 0])
IDX2 = torch.tensor([[0, 0], [2, 1]])
TARGET01 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
GRAD_LEAF = B.clone().requires_grad_(True)

Args = Sequence[object]
Kwargs = Mapping[str, object]


def _m(
    op: str, target: torch.Tensor, args: Args, expected: Callable[[], object], **kw: object
) -> object:
    return pytest.param(op, target, list(args), kw, expected, id=f"{op}-method")


def _f(op: str, args: Args, expected: Callable[[], object], **kw: object) -> object:
    return pytest.param(op, None, list(args), kw, expected, id=f"{op}-function")


CASES = [
    _m("add", A, [B], lambda: A + B),
    _f("add", [A, B], lambda: A + 2 * B, alpha=2),
    _m("sub", A, [1.5], lambda: A - 1.5),
    _m("mul", A, [B], lambda: A * B),
    _m("div", A, [B], lambda: A / B),
    _f("div", [A, B], lambda: torch.div(A, B, rounding_mode="floor"), rounding_mode="floor"),
    _m("floor_divide", A, [B], lambda: A // B),
    _m("remainder", A, [2.0], lambda: A % 2.0),
    _m("fmod", A, [2.0], lambda: torch.fmod(A, 2.0)),
    _m("pow", A, [2], lambda: A**2),
    _m("matmul", A, [B.t()], lambda: A @ B.t()),
    _f("mm", [A, B.t()], lambda: A.mm(B.t())),
    _f("bmm", [BATCH, BATCH.transpose(1, 2)], lambda: BATCH @ BATCH.transpose(1, 2)),
    _m("dot", V, [W], lambda: (V * W).sum()),
    _f("outer", [V, W], lambda: V[:, None] * W[None, :]),
    _f("maximum", [A, B], lambda: torch.where(A > B, A, B)),
    _m("minimum", A, [B], lambda: torch.where(A < B, A, B)),
    _m("radd", A, [2.0], lambda: 2.0 + A),
    _m("rsub", A, [B], lambda: B - A),
    _f("rsub", [A, 10.0], lambda: 10.0 - A),
    _m("rmul", A, [3], lambda: 3 * A),
    _m("rtruediv", POS, [1.0], lambda: 1.0 / POS),
    _m("rfloordiv", POS, [7.0], lambda: 7.0 // POS),
    _m("rmod", POS, [7.0], lambda: 7.0 % POS),
    _m("rpow", A, [2.0], lambda: 2.0**A),
    _m("rmatmul", B.t(), [A], lambda: A @ B.t()),
    _m("eq", A, [B], lambda: A == B),
    _m("ne", A, [1.0], lambda: A != 1.0),
    _f("lt", [A, B], lambda: A < B),
    _m("le", A, [B], lambda: A <= B),
    _m("gt", A, [0], lambda: A > 0),
    _f("ge", [A, B], lambda: A >= B),
    _m("isclose", A, [A + 1e-9], lambda: torch.ones_like(A, dtype=torch.bool)),
    _m("isnan", ODD, [], lambda: ODD != ODD),
    _f("isinf", [ODD], lambda: ODD.abs() == float("inf")),
    _m("isfinite", ODD, [], lambda: torch.tensor([True, False, False, False])),
    _m("logical_and", P, [Q], lambda: P & Q),
    _f("logical_or", [P, Q], lambda: P | Q),
    _m("logical_xor", P, [Q], lambda: P ^ Q),
    _m("logical_not", P, [], lambda: ~P),
    _m("bitwise_and", I, [6], lambda: I & 6),
    _f("bitwise_or", [P, Q], lambda: P | Q),
    _m("bitwise_xor", I, [J], lambda: I ^ J),
    _m("bitwise_not", I, [], lambda: ~I),
    _m("neg", A, [], lambda: -A),
    _f("abs", [A], lambda: A.abs()),
    _m("sign", A, [], lambda: A.sign()),
    _m("exp", A, [], lambda: A.exp()),
    _m("log", POS, [], lambda: POS.log()),
    _m("log2", POS, [], lambda: POS.log2()),
    _f("log10", [POS], lambda: POS.log10()),
    _m("log1p", POS, [], lambda: POS.log1p()),
    _m("expm1", A, [], lambda: A.expm1()),
    _m("sqrt", POS, [], lambda: POS.sqrt()),
    _m("rsqrt", POS, [], lambda: 1 / POS.sqrt()),
    _m("square", A, [], lambda: A * A),
    _m("sin", A, [], lambda: A.sin()),
    _m("cos", A, [], lambda: A.cos()),
    _m("tan", A, [], lambda: A.tan()),
    _f("tanh", [A], lambda: A.tanh()),
    _f("sigmoid", [A], lambda: 1 / (1 + (-A).exp())),
    _m("relu", A, [], lambda: A.clamp(min=0)),
    _f("relu", [A], lambda: A.clamp(min=0), inplace=False),
    _m("floor", A / 3, [], lambda: (A / 3).floor()),
    _m("ceil", A / 3, [], lambda: (A / 3).ceil()),
    _m("round", A / 3, [], lambda: (A / 3).round(decimals=1), decimals=1),
    _m("trunc", A / 3, [], lambda: (A / 3).trunc()),
    _m("reciprocal", POS, [], lambda: 1 / POS),
    _m("erf", A, [], lambda: A.erf()),
    _m("clamp", A, [], lambda: A.clamp(-1, 2), min=-1, max=2),
    _m("sum", A, [], lambda: A.sum()),
    _f("sum", [A], lambda: A.sum(1), dim=1),
    _m("mean", A, [0], lambda: A.mean(0)),
    _m("prod", A, [], lambda: A.prod()),
    _m("max", A, [], lambda: A.max()),
    _m("max", A, [1], lambda: A.max(1)),
    _m("max", A, [B], lambda: torch.maximum(A, B)),
    _f("max", [A], lambda: A.max(dim=0), dim=0),
    _m("min", A, [0], lambda: A.min(0, keepdim=True), keepdim=True),
    _f("min", [A], lambda: A.min()),
    _m("median", A, [], lambda: A.median()),
    _m("median", A, [1], lambda: A.median(1)),
    _m("mode", J, [], lambda: J.mode()),
    _f("aminmax", [A], lambda: A.aminmax(dim=0), dim=0),
    _m("amax", A, [1], lambda: A.amax(1)),
    _m("amin", A, [[0, 1]], lambda: A.amin((0, 1))),
    _m("argmax", A, [], lambda: A.argmax()),
    _f("argmin", [A, 1], lambda: A.argmin(1)),
    _m("std", A, [], lambda: A.std()),
    _m("var", A, [1], lambda: A.var(1, correction=0), correction=0),
    _f("std_mean", [A, 1], lambda: (A.std(1), A.mean(1))),
    _f("var_mean", [A], lambda: (A.var(), A.mean())),
    _m("norm", A, [], lambda: (A * A).sum().sqrt()),
    _f("norm", [A, 1, 1], lambda: A.abs().sum(1)),
    _m("all", P, [], lambda: torch.tensor(False)),
    _f("any", [P], lambda: torch.tensor(True)),
    _m("count_nonzero", P, [], lambda: torch.tensor(2)),
    _m("cumsum", A, [1], lambda: A.cumsum(1)),
    _f("cumprod", [A, 0], lambda: A.cumprod(0)),
    _m("cummax", A, [1], lambda: A.cummax(1)),
    _m("cummin", A, [1], lambda: A.cummin(1)),
    _m("logsumexp", A, [1], lambda: A.exp().sum(1).log()),
    _m("sort", A, [1], lambda: A.sort(1, descending=True), descending=True),
    _f("argsort", [A, 1], lambda: A.argsort(1)),
    _m("topk", A, [2], lambda: A.topk(2)),
    _f("kthvalue", [A, 2, 1], lambda: A.kthvalue(2, 1)),
    _m("reshape", A, [[3, 2]], lambda: A.reshape(3, 2)),
    _f("reshape", [A, [-1]], lambda: A.flatten()),
    _m("view", A, [3, 2], lambda: A.view(3, 2)),
    _m("view_as", A, [B.t()], lambda: A.view(3, 2)),
    _m("reshape_as", A, [B.t()], lambda: A.reshape(3, 2)),
    _m("flatten", BATCH, [1], lambda: BATCH.reshape(2, 12)),
    _f("unflatten", [V.repeat(2), 0, [2, 3]], lambda: V.repeat(2).view(2, 3)),
    _m("squeeze", A[None], [], lambda: A),
    _f("unsqueeze", [A, 1], lambda: A[:, None]),
    _m("transpose", A, [0, 1], lambda: A.t()),
    _f("permute", [BATCH, [2, 0, 1]], lambda: BATCH.permute(2, 0, 1)),
    _m("permute", BATCH, [2, 0, 1], lambda: BATCH.permute(2, 0, 1)),
    _f("movedim", [BATCH, 0, 2], lambda: BATCH.permute(1, 2, 0)),
    _m("t", A, [], lambda: A.transpose(0, 1)),
    _m("mT", BATCH, [], lambda: BATCH.transpose(1, 2)),
    _m("expand", V, [2, 3], lambda: torch.stack([V, V])),
    _m("expand_as", V, [A], lambda: torch.stack([V, V])),
    _m("repeat", V, [2, 1], lambda: torch.stack([V, V])),
    _m("contiguous", A.t(), [], lambda: A.t()),
    _f("clone", [A], lambda: A),
    _m("detach", A, [], lambda: A),
    _f("narrow", [A, 1, 0, 2], lambda: A[:, :2]),
    _f("flip", [A, [0]], lambda: A[[1, 0]]),
    _m("flip", A, [1], lambda: A[:, [2, 1, 0]]),
    _f("roll", [V, 1], lambda: V[[2, 0, 1]]),
    _m("getitem", A, [[slice(None), 1]], lambda: A[:, 1]),
    _f("index_select", [A, 1, IDX], lambda: A[:, [2, 0]]),
    _m("gather", A, [1, IDX2], lambda: torch.tensor([[1.0, 1.0], [-6.0, 5.0]])),
    _m("masked_fill", A, [A < 0, 0.0], lambda: A.clamp(min=0)),
    _f("where", [A > 0, A, B], lambda: torch.where(A > 0, A, B)),
    _f("where", [A > 0, A, 0.0], lambda: A.clamp(min=0)),
    _m("argwhere", P, [], lambda: torch.tensor([[0], [2]])),
    _m("float", I, [], lambda: I.to(torch.float32)),
    _m("double", A, [], lambda: A.to(torch.float64)),
    _m("half", A, [], lambda: A.to(torch.float16)),
    _m("bfloat16", A, [], lambda: A.to(torch.bfloat16)),
    _m("int", A, [], lambda: A.to(torch.int32)),
    _m("long", A, [], lambda: A.to(torch.int64)),
    _m("short", I, [], lambda: I.to(torch.int16)),
    _m("bool", A, [], lambda: A != 0),
    _m("to", A, [torch.float64], lambda: A.double()),
    _m("to", A, ["cpu"], lambda: A),
    _m("to", A, ["cpu", torch.int64], lambda: A.long()),
    _m("to", A, [], lambda: A.int(), dtype=torch.int32, copy=True),
    _m("type_as", A, [I], lambda: A.long()),
    _f("cat", [[A, B]], lambda: torch.cat((A, B))),
    _f("cat", [[A, B], 1], lambda: torch.cat((A, B), dim=1)),
    _f("stack", [[V, W]], lambda: torch.cat([V[None], W[None]])),
    _f("einsum", ["ij,kj->ik", A, B], lambda: A @ B.t()),
    _f("einsum", ["ij->ji", [A]], lambda: A.t()),
    _f("zeros_like", [A], lambda: A * 0),
    _f("ones_like", [A], lambda: torch.ones(2, 3, dtype=torch.int64), dtype=torch.int64),
    _f("full_like", [A, 7.0], lambda: A * 0 + 7.0),
    _m("softmax", A, [1], lambda: A.exp() / A.exp().sum(1, keepdim=True)),
    _f("softmax", [A, 0], lambda: A.exp() / A.exp().sum(0, keepdim=True)),
    _f("log_softmax", [A, 1], lambda: A - A.logsumexp(1, keepdim=True)),
    _f("gelu", [A], lambda: A * 0.5 * (1 + (A / 2**0.5).erf())),
    _f("gelu", [A], lambda: F.gelu(A, approximate="tanh"), approximate="tanh"),
    _f("silu", [A], lambda: A * A.sigmoid()),
    _f("leaky_relu", [A, 0.2], lambda: torch.where(A > 0, A, 0.2 * A)),
    _f("elu", [A], lambda: torch.where(A > 0, A, A.expm1())),
    _f("softplus", [A], lambda: (1 + (2 * A).exp()).log() / 2, beta=2),
    _f("hardtanh", [A, -2.0, 2.0, False], lambda: A.clamp(-2, 2)),
    _f("linear", [A, WEIGHT, BIAS], lambda: A @ WEIGHT.t() + BIAS),
    _f("conv1d", [IMG[0, :, 0], K1], lambda: F.conv1d(IMG[0, :, 0], K1)),
    _f("conv2d", [IMG, K2], lambda: F.conv2d(IMG, K2, padding=1), padding=1),
    _f("max_pool2d", [IMG, 2], lambda: IMG.reshape(1, 2, 2, 2, 2, 2).amax((3, 5))),
    _f("avg_pool2d", [IMG, 2], lambda: IMG.reshape(1, 2, 2, 2, 2, 2).mean((3, 5))),
    _f("dropout", [A, 0.5, False], lambda: A),
    _f("dropout", [A], lambda: A * 0, p=1.0),
    _f("mse_loss", [A, B], lambda: ((A - B) ** 2).mean()),
    _f("l1_loss", [A, B], lambda: (A - B).abs().mean()),
    _f("cross_entropy", [A, LABELS], lambda: -(A.log_softmax(1)[[0, 1], LABELS]).mean()),
    _f(
        "binary_cross_entropy_with_logits",
        [A, TARGET01],
        lambda: -(TARGET01 * A.sigmoid().log() + (1 - TARGET01) * (1 - A.sigmoid()).log()).mean(),
    ),
    _f("nll_loss", [A.log_softmax(1), LABELS], lambda: -(A.log_softmax(1)[[0, 1], LABELS]).mean()),
    _f("one_hot", [LABELS, 3], lambda: torch.tensor([[0, 0, 1], [1, 0, 0]])),
    _f("pad", [V, [1, 2]], lambda: torch.tensor([0.5, 1.0, 2.0, 3.0, 0.5, 0.5]), value=0.5),
    _f("normalize", [A], lambda: A / A.norm(dim=1, keepdim=True), dim=1),
    _f("layer_norm", [A, [3]], lambda: F.layer_norm(A, (3,))),
    _m("leaf", A, [True], lambda: A),
    _f("grad", [(GRAD_LEAF * A).sum(), [GRAD_LEAF]], lambda: (A,), retain_graph=True),
]


def _as_tuple(value: object) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    assert isinstance(value, tuple)
    return tuple(value)


def _assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g, w)
        if g.is_floating_point():
            assert torch.allclose(g, w, rtol=1e-5, atol=1e-6, equal_nan=True), (g, w)
        else:
            assert torch.equal(g, w), (g, w)


def test_table_keys_are_the_allowlist() -> None:
    """OP_TABLE has an entry for exactly the names in protocol.ops.OPS."""
    assert set(OP_TABLE) == set(OPS)


def test_every_op_is_exercised() -> None:
    """The case table below runs every allowlisted op at least once."""
    assert {case.values[0] for case in CASES} == set(OPS)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("op", "target", "args", "kwargs", "expected"), CASES)
def test_op_matches_torch(
    op: str, target: torch.Tensor | None, args: Args, kwargs: Kwargs, expected: Callable[[], object]
) -> None:
    """Each op gives the plain-torch reference result, as a tuple of tensors."""
    _assert_same(run_op(op, target, args, kwargs), _as_tuple(expected()))


@pytest.mark.parametrize(("op", "target", "args", "kwargs", "expected"), CASES)
def test_result_count_matches(
    op: str, target: torch.Tensor | None, args: Args, kwargs: Kwargs, expected: Callable[[], object]
) -> None:
    """result_count, computed from argument kinds, equals the tensors run_op returns."""
    produced = run_op(op, target, args, kwargs)
    assert result_count(op, target is not None, args, kwargs) == len(produced)


BOTH_FORMS = [
    case
    for case in CASES
    if OPS[case.values[0]].method and OPS[case.values[0]].function  # type: ignore[attr-defined]
]


@pytest.mark.parametrize(("op", "target", "args", "kwargs", "expected"), BOTH_FORMS)
def test_other_form_agrees(
    op: str, target: torch.Tensor | None, args: Args, kwargs: Kwargs, expected: Callable[[], object]
) -> None:
    """An op allowed in both forms gives the same result whichever form is used."""
    if target is None:
        other = run_op(op, args[0], args[1:], kwargs)  # type: ignore[arg-type]
    else:
        other = run_op(op, None, [target, *args], kwargs)
    _assert_same(other, _as_tuple(expected()))


FORBIDDEN = [
    "__class__", "__reduce__", "__getattribute__", "__subclasses__", "__globals__",
    "os.system", "system", "load", "save", "hub", "add_", "storage", "numpy",
    "item", "tolist", "eval", "", "__init__", "backward", "cuda", "zeros", "split",
]  # fmt: skip


@pytest.mark.parametrize("name", FORBIDDEN)
def test_forbidden_names_are_unsupported(name: str) -> None:
    """Names outside the allowlist raise UnsupportedOp in both forms."""
    with pytest.raises(UnsupportedOp):
        run_op(name, A, [], {})
    with pytest.raises(UnsupportedOp):
        run_op(name, None, [A], {})


@pytest.mark.parametrize(
    ("op", "target", "args"),
    [("cat", A, [[B]]), ("linear", A, [WEIGHT]), ("where", A > 0, [A, B]), ("view", None, [A, 6]),
     ("getitem", None, [A, 0]), ("float", None, [A]), ("radd", None, [A, 1])],
)  # fmt: skip
def test_form_mismatch_is_unsupported(op: str, target: torch.Tensor | None, args: Args) -> None:
    """A function-only op with a target, or a method-only op without one, is refused."""
    form = OpForm.FUNCTION if target is None else OpForm.METHOD
    with pytest.raises(UnsupportedOp) as info:
        run_op(op, target, args, {})
    assert info.value.details == {"op": op, "form": form.value}


@pytest.mark.parametrize("name", ["out", "_stacklevel", "__class__", "_"])
def test_out_and_private_kwargs_are_refused(name: str) -> None:
    """out= and keywords starting with _ are BadRequest, before anything runs."""
    with pytest.raises(BadRequest):
        run_op("add", A, [B], {name: torch.empty(2, 3)})


def test_forwarded_defaults_are_accepted() -> None:
    """out=None and inplace=False, which torch's wrappers forward, are ignored."""
    (got,) = run_op("relu", None, [A], {"inplace": False, "out": None})
    assert torch.equal(got, A.clamp(min=0))


def test_inplace_true_is_refused() -> None:
    """inplace=True, as keyword or positionally, is BadRequest and leaves the input intact."""
    x = A.clone()
    with pytest.raises(BadRequest):
        run_op("relu", None, [x], {"inplace": True})
    with pytest.raises(BadRequest):
        run_op("leaky_relu", None, [x, 0.1, True], {})
    with pytest.raises(BadRequest):
        run_op("dropout", None, [x, 0.5, True, True], {})
    with pytest.raises(BadRequest):
        run_op("normalize", None, [x, 2.0, 1, 1e-12, torch.empty(2, 3)], {})
    assert torch.equal(x, A)


def test_shape_mismatch_is_op_failed_naming_the_op() -> None:
    """A torch error becomes OpFailed: one line, bounded, naming the op."""
    with pytest.raises(OpFailed) as info:
        run_op("matmul", A, [B], {})
    message = info.value.message
    assert "'matmul'" in message and "\n" not in message
    assert len(message) <= MAX_ERROR_CHARS + 40
    assert info.value.details["op"] == "matmul"


@pytest.mark.parametrize(
    ("op", "python_op"),
    [("radd", operator.add), ("rsub", operator.sub), ("rmul", operator.mul),
     ("rtruediv", operator.truediv), ("rfloordiv", operator.floordiv), ("rmod", operator.mod),
     ("rpow", operator.pow)],
)  # fmt: skip
@pytest.mark.parametrize("left", [3.0, B])
def test_reflected_ops_compute_left_op_target(
    op: str, python_op: Callable[[object, object], torch.Tensor], left: object
) -> None:
    """A reflected op on target a with argument b computes b (op) a, not a (op) b."""
    (got,) = run_op(op, POS, [left], {})
    _assert_same((got,), (python_op(left, POS),))


@pytest.mark.parametrize(
    ("index", "expected"),
    [(1, A[1]), ([0, 2], A[0, 2]), (slice(1, None), A[1:]),
     ([slice(None), slice(None, None, 2)], A[:, ::2]),
     (None, A[None]), ([None, 0], A[None, 0]), (Ellipsis, A[...]), ([Ellipsis, -1], A[..., -1]),
     ([[1, 0]], A[[1, 0]]), ([[0, 1], [2, 0]], A[[0, 1], [2, 0]]), (A > 0, A[A > 0]),
     ([slice(None), IDX], A[:, IDX]), ([], A[()]), ([True], A[True])],
)  # fmt: skip
def test_getitem_index_components(index: object, expected: torch.Tensor) -> None:
    """getitem reads a list as a tuple index: ints, slices, None, Ellipsis, lists, masks."""
    _assert_same(run_op("getitem", A, [index], {}), (expected,))


@pytest.mark.parametrize("index", ["x", [b"x"], {"a": 1}, [torch.float32], 2.5, [5]])
def test_getitem_bad_index_is_op_failed(index: object) -> None:
    """A component that is no index (str, bytes, dict, dtype, float) or out of range: OpFailed."""
    with pytest.raises(OpFailed):
        run_op("getitem", A, [index], {})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(["cuda"], {}), (["meta"], {}), (["cpu", "cuda"], {}), ([], {"device": "cpu"}),
     ([torch.float32], {"non_blocking": True}), ([B], {}), ([1], {}),
     ([torch.float32, torch.int64], {}), ([torch.float32], {"dtype": torch.int64}),
     ([], {"dtype": "float32"}), ([], {"copy": 1})],
)  # fmt: skip
def test_to_accepts_a_dtype_and_cpu_only(args: Args, kwargs: Kwargs) -> None:
    """to() refuses other devices, tensors, keywords beyond dtype/copy and double dtypes."""
    with pytest.raises(BadRequest):
        run_op("to", A, args, kwargs)


def test_max_pool2d_return_indices_is_refused() -> None:
    """max_pool2d yields one tensor; return_indices=True would change the count."""
    with pytest.raises(BadRequest):
        run_op("max_pool2d", None, [IMG, 2], {"return_indices": True})


@pytest.mark.parametrize(
    ("op", "target", "args"),
    [("where", None, [A > 0]), ("softmax", A, []), ("log_softmax", None, [A]),
     ("view", A, [4]), ("zeros_like", None, [A]), ("float", A, [torch.float64]),
     ("normalize", None, [5]), ("mse_loss", None, [5, 5]), ("permute", None, [5, [0]])],
)  # fmt: skip
def test_bad_arguments_are_op_failed(op: str, target: torch.Tensor | None, args: Args) -> None:
    """One-argument where, softmax without dim, non-tensor inputs, bad arguments: OpFailed."""
    kwargs: Kwargs = {"device": "cpu"} if op == "zeros_like" else {}
    with pytest.raises(OpFailed) as info:
        run_op(op, target, args, kwargs)
    assert repr(op) in info.value.message


def test_results_are_new_tensor_objects_with_history_only_from_tensors_requiring_grad() -> None:
    """Results are never the input object itself; they keep autograd history only when an input
    requires grad (so a later ``grad`` command can differentiate them), and ``detach`` drops it."""
    x = A.clone().requires_grad_(True)
    for op in ("contiguous", "detach", "float", "mul"):
        (got,) = run_op(op, x, [2.0] if op == "mul" else [], {})
        (plain,) = run_op(op, A, [2.0] if op == "mul" else [], {})
        assert got is not x and plain is not A
        assert got.requires_grad == (op != "detach") and not plain.requires_grad
        assert got.device.type == "cpu"


def test_grad_differentiates_without_writing_into_its_inputs() -> None:
    """grad gives torch.autograd.grad's gradients as new tensors; the leaf's .grad stays None."""
    (w,) = run_op("leaf", V, [], {})
    assert w.requires_grad and w.is_leaf and not V.requires_grad
    (loss,) = run_op("sum", None, [run_op("mul", w, [W], {})[0]], {})
    (grad,) = run_op("grad", None, [loss, [w]], {})
    assert torch.equal(grad, W) and w.grad is None and not grad.requires_grad
    with pytest.raises(OpFailed, match="grad"):  # the history is freed, as after backward()
        run_op("grad", None, [loss, [w]], {})


@pytest.mark.parametrize(
    "kwargs", [{"create_graph": True}, {"allow_unused": True}, {"is_grads_batched": True}, {"retain_graph": 1}]
)
def test_grad_refuses_keywords_other_than_their_defaults(kwargs: Kwargs) -> None:
    """create_graph, allow_unused... would store histories or None: BadRequest."""
    (w,) = run_op("leaf", V, [], {})
    (loss,) = run_op("sum", w, [], {})
    with pytest.raises(BadRequest, match="grad"):
        run_op("grad", None, [loss, [w]], kwargs)


@pytest.mark.parametrize("flag", [1, A[0, 0], "yes"])
def test_leaf_takes_a_real_bool(flag: object) -> None:
    """A tensor (or anything but a bool) as requires_grad would be read as a value: BadRequest."""
    with pytest.raises(BadRequest, match="bool"):
        run_op("leaf", V, [flag], {})


def test_estimated_cost_counts_tensor_elements() -> None:
    """estimated_cost sums the numel of the target, tensor args and tensors in list args."""
    assert estimated_cost(None, []) == 0
    assert estimated_cost(A, [B, 2.0, "x"]) == 12
    assert estimated_cost(None, [[A, V, 1], IMG, {"x": A}]) == 6 + 3 + 32
