"""Remote code execution through op names, keyword names and index values: all refused.

PySyft 0.2 resolved a command's op with ``getattr`` on torch or on the
tensor, so ``__class__``, ``__reduce__`` or ``load`` reached the interpreter.
Tessera maps each op name to its own callable (``protocol/ops.py``,
``node/server/ops_table.py``); these attacks check that over the wire, on a
real node, every such name is ``UNSUPPORTED_OP`` in both forms and creates
nothing, and that the same names smuggled as keywords or as a ``getitem``
index are refused with a typed error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from protocol.messages import CommandRequest, DescribeRequest, ErrorReply, GetRequest, PutRequest
from protocol.values import PointerRef
from tests.security.attack_wire import Raw, codes, errors, new_id
from tests.security.conftest import Bystander, bystander_fixture
from tests.support import NodeProcess

bystander = bystander_fixture("shared_node")


@pytest.fixture
def guard(bystander: Bystander) -> Any:
    """After each attack, the node still serves a legitimate client correctly."""
    yield bystander.proc
    bystander.check()


DANGEROUS_OPS = [
    # Attribute tricks: the road from any object to builtins and the interpreter.
    "__reduce__", "__reduce_ex__", "__class__", "__subclasses__", "__globals__", "__init__",
    "__getattribute__", "__getattr__", "__setattr__", "__dict__", "__builtins__", "__import__",
    "__setstate__", "__call__", "__code__", "mro",
    # Dotted chains a name resolver might walk.
    "__class__.__mro__", "__class__.__base__.__subclasses__", "__init__.__globals__",
    "os.system", "torch.load", "torch.save", "torch.hub.load", "torch.ops.aten.add",
    "builtins.eval", "subprocess.Popen",
    # Names of Python builtins and of modules.
    "system", "eval", "exec", "compile", "getattr", "setattr", "open", "os", "subprocess",
    # Torch entry points that touch files, processes, devices, storage or pickle.
    "load", "save", "hub", "ops", "jit", "classes", "_C", "from_file", "storage",
    "untyped_storage", "data_ptr", "set_", "share_memory_", "cuda", "backward",
    "register_hook", "apply_", "map_",
    # Ops that hand data back as Python values, in-place ops, size-taking factories.
    "numpy", "tolist", "item", "add_", "zero_", "new_empty", "zeros", "empty",
    # Near misses of allowed names.
    "ADD", " add", "add ", "add\x00", "neg.__class__",
]


async def _refused_in_both_forms(proc: NodeProcess, op: str) -> tuple[list[Any], list[int]]:
    raw = await Raw.open(proc)
    own = new_id()
    results = [new_id(), new_id()]
    replies = await raw.exchange([
        PutRequest(2, own, torch.arange(4.0)),
        CommandRequest(3, op, PointerRef(proc.node_id, own), (), {}, (results[0],)),
        CommandRequest(4, op, None, (PointerRef(proc.node_id, own),), {}, (results[1],)),
    ])
    created = [oid for oid in results if not codes(await raw.exchange([DescribeRequest(5, (oid,))]))]
    await raw.close()
    return replies, created


@pytest.mark.parametrize("op", DANGEROUS_OPS)
def test_dangerous_op_name_is_unsupported(guard: NodeProcess, op: str) -> None:
    """RCE via a command op name (method and function form) -> UNSUPPORTED_OP, nothing created."""
    replies, created = asyncio.run(_refused_in_both_forms(guard, op))
    assert [(e.id, e.code) for e in errors(replies)] == [(3, "UNSUPPORTED_OP"), (4, "UNSUPPORTED_OP")]
    assert created == []


@pytest.mark.parametrize("op", ["getitem", "view", "float", "mT", "to"])
def test_method_only_op_in_function_form_is_unsupported(guard: NodeProcess, op: str) -> None:
    """A method-only op called without a target (torch.<op> lookup) -> UNSUPPORTED_OP."""

    async def run() -> list[Any]:
        raw = await Raw.open(guard)
        own = new_id()
        replies = await raw.exchange([
            PutRequest(2, own, torch.ones(2)),
            CommandRequest(3, op, None, (PointerRef(guard.node_id, own),), {}, (new_id(),)),
        ])
        await raw.close()
        return replies

    assert codes(asyncio.run(run())) == ["UNSUPPORTED_OP"]


@pytest.mark.parametrize(
    "op, kwargs",
    [
        ("add", {"__class__": 1}),
        ("add", {"__reduce__": "os.system"}),
        ("add", {"__globals__": {}}),
        ("add", {"_x": 1}),
        ("add", {"_": "eval"}),
        ("add", {"out": "self"}),
        ("clamp", {"out": "self"}),
        ("to", {"device": "cuda"}),
        ("to", {"__class__": "torch.float64"}),
        ("dropout", {"inplace": True}),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_dangerous_keyword_is_bad_request(guard: NodeProcess, op: str, kwargs: dict[str, Any]) -> None:
    """RCE/in-place write via kwargs keys (__class__, _x, out=, inplace=True) -> BAD_REQUEST."""

    async def run() -> tuple[list[Any], torch.Tensor]:
        raw = await Raw.open(guard)
        own, result = new_id(), new_id()
        pointer = PointerRef(guard.node_id, own)
        wire_kwargs = {k: (pointer if v == "self" else v) for k, v in kwargs.items()}
        target: PointerRef | None = pointer
        args: tuple[Any, ...] = (pointer,) if op == "add" else ()
        if op == "dropout":  # function form only
            target, args = None, (pointer,)
        replies = await raw.exchange([
            PutRequest(2, own, torch.arange(3.0)),
            CommandRequest(3, op, target, args, wire_kwargs, (result,)),
        ])
        kept = await raw.request(GetRequest(6, own))
        missing = await raw.request(GetRequest(7, result))
        await raw.close()
        assert isinstance(missing, ErrorReply) and missing.code == "NOT_FOUND"
        return replies, kept.value

    replies, kept = asyncio.run(run())
    assert codes(replies) == ["BAD_REQUEST"]
    assert torch.equal(kept, torch.arange(3.0)), "out= wrote into an existing object"


@pytest.mark.parametrize(
    "index",
    ["__class__", "os.system", ["__class__", "__mro__"], [0, "__globals__"], {"__class__": 1}, b"__reduce__"],
    ids=repr,
)
def test_getitem_with_attribute_name_index_is_refused(guard: NodeProcess, index: Any) -> None:
    """getattr smuggled as a getitem index (str, bytes, map, in a tuple) -> OP_FAILED, no echo of internals."""

    async def run() -> list[Any]:
        raw = await Raw.open(guard)
        own = new_id()
        replies = await raw.exchange([
            PutRequest(2, own, torch.arange(3.0)),
            CommandRequest(3, "getitem", PointerRef(guard.node_id, own), (index,), {}, (new_id(),)),
        ])
        await raw.close()
        return replies

    found = errors(asyncio.run(run()))
    assert [e.code for e in found] == ["OP_FAILED"]
    assert "may not be a" in found[0].message and "Traceback" not in found[0].message
