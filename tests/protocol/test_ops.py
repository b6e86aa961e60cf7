"""The wire allowlist: names, forms and result counts (no torch involved)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from protocol.errors import ErrorCode, UnsupportedOp
from protocol.ops import OPS, OpForm, OpSpec, ResultRule, result_count, spec_for

FORBIDDEN = [
    "__class__",
    "__reduce__",
    "__reduce_ex__",
    "__getattribute__",
    "__subclasses__",
    "__globals__",
    "__init__",
    "os.system",
    "system",
    "load",
    "save",
    "hub",
    "from_file",
    "add_",
    "mul_",
    "storage",
    "untyped_storage",
    "data_ptr",
    "set_",
    "resize_",
    "numpy",
    "item",
    "tolist",
    "backward",
    "register_hook",
    "cuda",
    "eval",
    "exec",
    "zeros",
    "ones",
    "empty",
    "randn",
    "arange",
    "split",
    "chunk",
    "unbind",
    "unique",
    "nonzero",
    "",
    "torch.add",
    "ADD",
]


def test_every_key_is_its_spec_name() -> None:
    """Each OPS key equals its OpSpec's name, and every spec allows some form."""
    for name, spec in OPS.items():
        assert isinstance(spec, OpSpec)
        assert spec.name == name
        assert spec.method or spec.function
        assert spec.doc and "\n" not in spec.doc


def test_no_inplace_or_private_names() -> None:
    """No allowlisted name is in-place (trailing _), private or dotted."""
    for name in OPS:
        assert name.isidentifier(), name
        assert not name.endswith("_"), name
        assert not name.startswith("_"), name


@pytest.mark.parametrize("name", FORBIDDEN)
@pytest.mark.parametrize("has_target", [True, False])
def test_forbidden_names_are_unsupported(name: str, has_target: bool) -> None:
    """Attribute tricks, I/O, in-place, factories and data-sized ops raise UnsupportedOp."""
    with pytest.raises(UnsupportedOp) as info:
        result_count(name, has_target, [], {})
    assert info.value.code is ErrorCode.UNSUPPORTED_OP


def test_form_mismatch_is_unsupported() -> None:
    """A function-only op as a method, or a method-only op as a function, is refused."""
    with pytest.raises(UnsupportedOp) as info:
        spec_for("cat", OpForm.METHOD)
    assert info.value.details == {"op": "cat", "form": "method"}
    with pytest.raises(UnsupportedOp):
        spec_for("view", OpForm.FUNCTION)
    with pytest.raises(UnsupportedOp):
        spec_for("where", OpForm.METHOD)


def test_spec_for_returns_spec() -> None:
    """spec_for hands back the OpSpec when the form is allowed."""
    assert spec_for("add", OpForm.METHOD) is OPS["add"]
    assert spec_for("add", OpForm.FUNCTION) is OPS["add"]
    assert OPS["add"].allows(OpForm.METHOD) and OPS["add"].allows(OpForm.FUNCTION)


def test_non_string_op_is_unsupported() -> None:
    """An op name that is not a string (a confused peer) is refused, not a crash."""
    with pytest.raises(UnsupportedOp):
        spec_for(42, OpForm.FUNCTION)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "has_target", "args", "kwargs", "expected"),
    [
        ("add", True, [1], {}, 1),
        ("max", True, [], {}, 1),
        ("max", True, [0], {}, 2),
        ("max", True, [], {"dim": 1}, 2),
        ("max", True, [], {"dim": None}, 1),
        ("max", True, [object()], {}, 1),
        ("max", True, [True], {}, 1),
        ("max", False, [object()], {}, 1),
        ("max", False, [object(), 0], {}, 2),
        ("max", False, [object(), object()], {}, 1),
        ("min", False, [object()], {"dim": 0, "keepdim": True}, 2),
        ("median", True, [], {}, 1),
        ("median", True, [-1], {}, 2),
        ("mode", True, [], {}, 2),
        ("sort", True, [], {}, 2),
        ("topk", False, [object(), 2], {}, 2),
        ("kthvalue", True, [1], {}, 2),
        ("aminmax", True, [], {}, 2),
        ("std_mean", False, [object()], {}, 2),
        ("var_mean", False, [object()], {}, 2),
        ("cummax", True, [0], {}, 2),
        ("getitem", True, [[0, 1]], {}, 1),
    ],
)
def test_result_count(
    op: str, has_target: bool, args: list[object], kwargs: dict[str, object], expected: int
) -> None:
    """result_count follows the argument kinds: a dim makes max/min/median a pair."""
    assert result_count(op, has_target, args, kwargs) == expected


def test_result_rules_are_declared() -> None:
    """Only the ops known to return pairs declare a rule other than ONE."""
    pairs = {name for name, spec in OPS.items() if spec.results is not ResultRule.ONE}
    assert pairs == {
        "max",
        "min",
        "median",
        "mode",
        "aminmax",
        "std_mean",
        "var_mean",
        "cummax",
        "cummin",
        "sort",
        "topk",
        "kthvalue",
        "grad",
    }


def test_module_imports_only_stdlib_and_errors() -> None:
    """protocol/ops.py imports the standard library and protocol.errors only (no torch)."""
    source = Path(__file__).parents[2] / "protocol" / "ops.py"
    tree = ast.parse(source.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "enum", "dataclasses", "types", "typing", "protocol.errors"}
