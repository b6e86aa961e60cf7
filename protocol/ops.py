"""The op allowlist as seen on the wire: which tensor ops a node will run.

A command names its op by a string from the peer; this module is the closed
set of such strings.  PySyft 0.2 resolved the name with
``getattr(torch, name)`` and was owned through it (``__class__``,
``__reduce__``, ``load``...).  Here a name is either a key of :data:`OPS` or
refused with :class:`~protocol.errors.UnsupportedOp`; the node maps each key
to its own callable (``node/server/ops_table.py``), never to an attribute
looked up by that name.

Forms.  ``METHOD`` means ``target.op(*args, **kwargs)``: the command carries
a target and the node passes it as the first positional argument.
``FUNCTION`` means ``torch.op(*args, **kwargs)`` (or ``torch.nn.functional``),
with no target.  Each op declares which forms it allows.

Result counts.  The client picks result ids before sending (pipelining), so
the number of tensors an op yields must follow from the op name and the
arguments' *kinds*, never from tensor contents: :func:`result_count`.

Deliberately excluded, and why:

- In-place ops (names ending in ``_``) and ``out=``: stored objects are
  shared by pointers and guarded by owners; a command may create objects,
  never rewrite one.  Autograd follows the same rule (see *Autograd*).  ``inplace=True`` is refused by the node for the same
  reason, and ops whose torch signature takes ``out`` or ``inplace``
  positionally are wrapped so that it cannot be passed.
- Anything touching files, processes, devices, storage or pickle: ``load``,
  ``save``, ``hub``, ``from_file``, ``storage``, ``data_ptr``, ``set_``,
  ``resize_``, ``cuda``, ``register_hook``.  ``backward`` writes into
  ``.grad`` of objects: it is replaced by ``grad`` below.  ``to`` accepts a
  dtype and the device ``"cpu"`` only.
- Ops that hand back Python values instead of tensors (``numpy``,
  ``tolist``, ``item``, ``equal``, ``allclose``): data leaves a node through
  ``get`` alone, where the store checks permissions.
- Factory functions taking a size (``zeros``, ``ones``, ``empty``,
  ``full``, ``arange``, ``randn``...): one small message could allocate any
  amount of memory.  The ``*_like`` forms are bounded by an existing tensor.
  (Per-principal quotas come later; ``repeat``, ``expand``+``clone``,
  ``pad``, ``one_hot`` and ``outer`` can still amplify memory until then.)
- Random ops other than ``dropout``: torch's generators are not a
  cryptographic source (see DESIGN.md, SPDZ) and fresh randomness is the
  crypto provider's job.
- Ops whose number of outputs depends on the data or sizes: ``split``,
  ``chunk``, ``unbind``, ``unique``, ``nonzero(as_tuple=True)``,
  ``where(condition)`` with one argument.  (``argwhere`` covers the last
  two with one tensor.)

Autograd, as commands that create objects.  A result computed from a
tensor that requires grad keeps its autograd history on the node.  Two ops
make training possible without rewriting any object: ``leaf`` (a new leaf
tensor with the data of its target and the given ``requires_grad``: what
``requires_grad_``, ``detach`` + re-marking after an optimiser step, and a
sent model's parameters use) and ``grad`` (``torch.autograd.grad`` of an
output with respect to a list of tensors, one new gradient object per
tensor: what ``backward`` becomes).  ``.grad``, ``zero_grad`` and the
optimiser's update live in the client (:mod:`node.client.optim`): the
update is ordinary arithmetic commands followed by ``leaf``.

This module imports only the standard library and ``protocol.errors``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

from protocol.errors import BadRequest, UnsupportedOp

__all__ = ["OpForm", "ResultRule", "OpSpec", "OPS", "spec_for", "result_count"]


class OpForm(str, enum.Enum):
    """How a command invokes its op: on a target tensor, or as a function."""

    METHOD = "method"
    FUNCTION = "function"


class ResultRule(enum.Enum):
    """How many tensors an op yields, as a rule the client can evaluate."""

    ONE = "one"
    """Exactly one tensor."""
    TWO = "two"
    """Always a pair, e.g. ``(values, indices)``."""
    TWO_WITH_DIM = "two_with_dim"
    """A pair when a ``dim`` is given (positional int or keyword), else one."""
    PER_INPUT = "per_input"
    """One per tensor in the list given as the second argument (``grad``'s inputs)."""


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One allowlisted op: its wire name, the forms it allows, what it does."""

    name: str
    method: bool
    function: bool
    doc: str
    results: ResultRule = ResultRule.ONE

    def allows(self, form: OpForm) -> bool:
        """Whether the op may be invoked in ``form``."""
        return self.method if form is OpForm.METHOD else self.function


def _mf(name: str, doc: str, results: ResultRule = ResultRule.ONE) -> OpSpec:
    return OpSpec(name, True, True, doc, results)


def _m(name: str, doc: str, results: ResultRule = ResultRule.ONE) -> OpSpec:
    return OpSpec(name, True, False, doc, results)


def _f(name: str, doc: str, results: ResultRule = ResultRule.ONE) -> OpSpec:
    return OpSpec(name, False, True, doc, results)


_TWO = ResultRule.TWO
_TWO_WITH_DIM = ResultRule.TWO_WITH_DIM

_SPECS: tuple[OpSpec, ...] = (
    # Arithmetic.
    _mf("add", "a + alpha * b, broadcasting"),
    _mf("sub", "a - alpha * b, broadcasting"),
    _mf("mul", "a * b, broadcasting"),
    _mf("div", "a / b; rounding_mode 'trunc' or 'floor' allowed"),
    _mf("floor_divide", "a // b, rounding towards minus infinity"),
    _mf("remainder", "a % b with the sign of b (Python's %)"),
    _mf("fmod", "a % b with the sign of a (C's fmod)"),
    _mf("pow", "a ** b"),
    _mf("matmul", "a @ b with batching and broadcasting"),
    _mf("mm", "matrix product of two 2-D tensors"),
    _mf("bmm", "batched matrix product of two 3-D tensors"),
    _mf("dot", "inner product of two 1-D tensors"),
    _mf("outer", "outer product of two 1-D tensors"),
    _mf("maximum", "elementwise maximum of two tensors"),
    _mf("minimum", "elementwise minimum of two tensors"),
    # Reflected forms: the target is the right operand, args[0] the left one.
    _m("radd", "b + a, for a Python operator with b on the left"),
    _mf("rsub", "b - alpha * a (torch.rsub), for b - a with b on the left"),
    _m("rmul", "b * a, for b * a with b on the left"),
    _m("rtruediv", "b / a, for b / a with b on the left"),
    _m("rfloordiv", "b // a, for b // a with b on the left"),
    _m("rmod", "b % a, for b % a with b on the left"),
    _m("rpow", "b ** a, for b ** a with b on the left"),
    _m("rmatmul", "b @ a, for b @ a with b on the left"),
    # Comparisons and tests (bool results).
    _mf("eq", "a == b elementwise"),
    _mf("ne", "a != b elementwise"),
    _mf("lt", "a < b elementwise"),
    _mf("le", "a <= b elementwise"),
    _mf("gt", "a > b elementwise"),
    _mf("ge", "a >= b elementwise"),
    _mf("isclose", "|a - b| <= atol + rtol * |b| elementwise"),
    _mf("isnan", "whether each element is NaN"),
    _mf("isinf", "whether each element is infinite"),
    _mf("isfinite", "whether each element is finite"),
    # Logical and bitwise (Python's & | ^ ~ map to the bitwise ops).
    _mf("logical_and", "truth of a and b elementwise"),
    _mf("logical_or", "truth of a or b elementwise"),
    _mf("logical_xor", "truth of a xor b elementwise"),
    _mf("logical_not", "truth of not a elementwise"),
    _mf("bitwise_and", "a & b for integer or bool tensors"),
    _mf("bitwise_or", "a | b for integer or bool tensors"),
    _mf("bitwise_xor", "a ^ b for integer or bool tensors"),
    _mf("bitwise_not", "~a for integer or bool tensors"),
    # Unary elementwise.
    _mf("neg", "-a"),
    _mf("abs", "|a|"),
    _mf("sign", "-1, 0 or 1 by the sign of each element"),
    _mf("exp", "e ** a"),
    _mf("log", "natural logarithm"),
    _mf("log2", "base-2 logarithm"),
    _mf("log10", "base-10 logarithm"),
    _mf("log1p", "log(1 + a), accurate near zero"),
    _mf("expm1", "e ** a - 1, accurate near zero"),
    _mf("sqrt", "square root"),
    _mf("rsqrt", "1 / sqrt(a)"),
    _mf("square", "a * a"),
    _mf("sin", "sine"),
    _mf("cos", "cosine"),
    _mf("tan", "tangent"),
    _mf("tanh", "hyperbolic tangent"),
    _mf("sigmoid", "1 / (1 + e ** -a)"),
    _mf("relu", "max(a, 0)"),
    _mf("floor", "round towards minus infinity"),
    _mf("ceil", "round towards plus infinity"),
    _mf("round", "round half to even; decimals allowed"),
    _mf("trunc", "round towards zero"),
    _mf("reciprocal", "1 / a"),
    _mf("erf", "error function"),
    _mf("clamp", "a limited to [min, max]"),
    # Reductions and scans.
    _mf("sum", "sum of all elements, or along dim"),
    _mf("mean", "mean of all elements, or along dim"),
    _mf("prod", "product of all elements, or along dim"),
    _mf("max", "maximum; (values, indices) along a dim; elementwise with a tensor", _TWO_WITH_DIM),
    _mf("min", "minimum; (values, indices) along a dim; elementwise with a tensor", _TWO_WITH_DIM),
    _mf("median", "lower median; (values, indices) along a dim", _TWO_WITH_DIM),
    _mf("mode", "(values, indices) of the most frequent value along dim (default -1)", _TWO),
    _mf("aminmax", "(min, max) of all elements, or along dim", _TWO),
    _mf("amax", "maximum values along dims"),
    _mf("amin", "minimum values along dims"),
    _mf("argmax", "index of the maximum, flat or along dim"),
    _mf("argmin", "index of the minimum, flat or along dim"),
    _mf("std", "standard deviation (correction allowed)"),
    _mf("var", "variance (correction allowed)"),
    _f("std_mean", "(std, mean) in one pass", _TWO),
    _f("var_mean", "(var, mean) in one pass", _TWO),
    _mf("norm", "vector or matrix norm (p, dim, keepdim)"),
    _mf("all", "whether all elements are true, or along dim"),
    _mf("any", "whether any element is true, or along dim"),
    _mf("count_nonzero", "number of non-zero elements, or along dims"),
    _mf("cumsum", "cumulative sum along dim"),
    _mf("cumprod", "cumulative product along dim"),
    _mf("cummax", "(values, indices) of the running maximum along dim", _TWO),
    _mf("cummin", "(values, indices) of the running minimum along dim", _TWO),
    _mf("logsumexp", "log(sum(exp(a))) along dim, stably"),
    _mf("sort", "(values, indices) sorted along dim", _TWO),
    _mf("argsort", "indices that sort along dim"),
    _mf("topk", "(values, indices) of the k largest (or smallest) along dim", _TWO),
    _mf("kthvalue", "(values, indices) of the k-th smallest along dim", _TWO),
    # Shapes and views.
    _mf("reshape", "same elements in a new shape (view when possible)"),
    _m("view", "view with a new shape (no copy)"),
    _m("view_as", "view with the shape of another tensor"),
    _m("reshape_as", "reshape to the shape of another tensor"),
    _mf("flatten", "merge dims start_dim..end_dim into one"),
    _mf("unflatten", "split one dim into the given sizes"),
    _mf("squeeze", "drop dims of size 1 (all, or the given ones)"),
    _mf("unsqueeze", "insert a dim of size 1"),
    _mf("transpose", "swap two dims"),
    _mf("permute", "reorder all dims"),
    _mf("movedim", "move dims to new positions"),
    _mf("t", "transpose of a tensor with at most 2 dims"),
    _m("mT", "transpose of the last two dims (the mT property)"),
    _m("expand", "broadcast view to a larger shape (no copy)"),
    _m("expand_as", "broadcast view to the shape of another tensor"),
    _m("repeat", "tile the tensor the given number of times per dim"),
    _m("contiguous", "contiguous copy, or the tensor itself if already so"),
    _mf("clone", "copy"),
    _mf("detach", "the same data without autograd history"),
    _mf("narrow", "view of length elements from start along dim"),
    _mf("flip", "reverse along dims"),
    _mf("roll", "rotate elements along dims"),
    # Indexing and selection.
    _m("getitem", "a[index]; a list index means a tuple of components"),
    _mf("index_select", "entries at the given indices along dim"),
    _mf("gather", "values at index along dim"),
    _mf("masked_fill", "copy with value where mask is true"),
    _f("where", "x where condition else y (three arguments only)"),
    _mf("argwhere", "indices of non-zero elements, one row each"),
    # Dtype conversions.
    _m("float", "convert to float32"),
    _m("double", "convert to float64"),
    _m("half", "convert to float16"),
    _m("bfloat16", "convert to bfloat16"),
    _m("int", "convert to int32"),
    _m("long", "convert to int64"),
    _m("short", "convert to int16"),
    _m("bool", "convert to bool"),
    _m("to", "convert dtype; the only device accepted is 'cpu'; kwargs dtype, copy"),
    _m("type_as", "convert to the dtype of another tensor"),
    # Functions of several tensors, and tensors shaped like others.
    _f("cat", "concatenate a list of tensors along dim"),
    _f("stack", "stack a list of tensors along a new dim"),
    _f("einsum", "Einstein summation given an equation and operands"),
    _f("zeros_like", "zeros with the shape of a tensor (dtype kw only)"),
    _f("ones_like", "ones with the shape of a tensor (dtype kw only)"),
    _f("full_like", "fill_value with the shape of a tensor (dtype kw only)"),
    _mf("softmax", "softmax along dim (dim required)"),
    _mf("log_softmax", "log of softmax along dim (dim required)"),
    # torch.nn.functional.
    _f("gelu", "Gaussian error linear unit (approximate 'none' or 'tanh')"),
    _f("silu", "a * sigmoid(a)"),
    _f("leaky_relu", "max(a, 0) + negative_slope * min(a, 0)"),
    _f("elu", "exponential linear unit"),
    _f("softplus", "log(1 + e ** (beta * a)) / beta"),
    _f("hardtanh", "a limited to [min_val, max_val]"),
    _f("linear", "a @ weight.T + bias"),
    _f("conv1d", "1-D convolution"),
    _f("conv2d", "2-D convolution"),
    _f("max_pool2d", "2-D max pooling (return_indices not allowed)"),
    _f("avg_pool2d", "2-D average pooling"),
    _f("dropout", "zero elements with probability p; random when training=True"),
    _f("mse_loss", "mean squared error"),
    _f("l1_loss", "mean absolute error"),
    _f("cross_entropy", "cross entropy between logits and class targets"),
    _f("binary_cross_entropy_with_logits", "binary cross entropy on logits"),
    _f("nll_loss", "negative log likelihood of log-probabilities"),
    _f("one_hot", "one-hot encoding of int64 class indices"),
    _f("pad", "pad the last dims (constant, reflect, replicate, circular)"),
    _f("normalize", "a / max(norm(a, p, dim), eps)"),
    _f("layer_norm", "layer normalisation over the last dims"),
    # Autograd (see the module docstring): both create objects, neither rewrites one.
    _m("leaf", "a new leaf tensor with the same data; requires_grad (a bool, default True)"),
    _f("grad", "gradients of an output w.r.t. a list of tensors (autograd.grad); one per tensor",
       ResultRule.PER_INPUT),
)


def _index(specs: Sequence[OpSpec]) -> Mapping[str, OpSpec]:
    table: dict[str, OpSpec] = {}
    for spec in specs:
        assert spec.name not in table, f"duplicate op {spec.name}"
        assert spec.method or spec.function, f"op {spec.name} has no form"
        table[spec.name] = spec
    return MappingProxyType(table)


OPS: Mapping[str, OpSpec] = _index(_SPECS)
"""Every op a node runs, by wire name."""


def spec_for(op: str, form: OpForm) -> OpSpec:
    """The spec of ``op`` if it is allowlisted in ``form``; else ``UnsupportedOp``."""
    spec = OPS.get(op) if isinstance(op, str) else None
    if spec is None or not spec.allows(form):
        raise UnsupportedOp.for_op(str(op), form.value)
    return spec


def result_count(
    op: str,
    has_target: bool,
    args: Sequence[object],
    kwargs: Mapping[str, object],
) -> int:
    """How many tensors ``op`` yields for these arguments.

    Looks only at argument kinds, so the client can call it before sending
    (it holds pointers, not tensors).  ``max``/``min``/``median`` yield a
    ``(values, indices)`` pair when a ``dim`` is given, as a positional
    ``int`` (the first argument after the input) or as the ``dim`` keyword;
    ``max(a, b)`` with a tensor ``b`` is elementwise and yields one.
    Raises ``UnsupportedOp`` for an op not allowed in that form.
    """
    form = OpForm.METHOD if has_target else OpForm.FUNCTION
    rule = spec_for(op, form).results
    if rule is ResultRule.ONE:
        return 1
    if rule is ResultRule.TWO:
        return 2
    if rule is ResultRule.PER_INPUT:
        return _inputs_given(op, args, kwargs)
    return 2 if _dim_given(has_target, args, kwargs) else 1


def _dim_given(has_target: bool, args: Sequence[object], kwargs: Mapping[str, object]) -> bool:
    if kwargs.get("dim") is not None:
        return True
    position = 0 if has_target else 1  # a function's first argument is the input
    if len(args) <= position:
        return False
    candidate = args[position]
    return isinstance(candidate, int) and not isinstance(candidate, bool)


MAX_GRAD_INPUTS = 1024
"""Most tensors one ``grad`` command differentiates with respect to."""


def _inputs_given(op: str, args: Sequence[object], kwargs: Mapping[str, object]) -> int:
    """The length of ``grad``'s list of inputs (second positional argument or ``inputs``)."""
    inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
    if not isinstance(inputs, (list, tuple)) or not 0 < len(inputs) <= MAX_GRAD_INPUTS:
        raise BadRequest(
            f"op {op!r} needs a list of 1 to {MAX_GRAD_INPUTS} tensors as its second argument",
            {"op": op},
        )
    return len(inputs)
