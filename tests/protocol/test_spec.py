"""PROTOCOL.md documents every kind, field, op, dtype, limit and ext code the code defines.

The worked examples in PROTOCOL.md are checked against the real encoder, so
the hex dumps cannot drift from the wire format.
"""

from __future__ import annotations

import re

import pytest
import torch

from protocol import limits
from tests.protocol.federated_examples import EXAMPLES as FEDERATED_EXAMPLES
from tests.protocol.spec_text import contains_dump, sections, spec_text
from tests.protocol.mpc_examples import EXAMPLES as MPC_EXAMPLES
from tests.protocol.secagg_examples import EXAMPLES as SECAGG_EXAMPLES
from protocol.codec import ExtCode, encode_message_bytes
from protocol.fields import body_of
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.streams import PutChunkRequest, ReadReply, ReadRequest
from protocol.messages import (
    AckReply,
    CommandRequest,
    DeleteRequest,
    DeliverRequest,
    DeregisterRequest,
    DescribeReply,
    DescribeRequest,
    ErrorReply,
    ExpectRequest,
    GetReply,
    GetRequest,
    HeartbeatRequest,
    HelloReply,
    HelloRequest,
    ListReply,
    ListRequest,
    Message,
    MessageKind,
    NodesReply,
    NodesRequest,
    ObjectInfo,
    PutRequest,
    RegisterReply,
    RegisterRequest,
    ReleaseRequest,
    SyncReply,
    SyncRequest,
    TransferRequest,
)
from protocol.ops import OPS, ResultRule
from protocol.records import DatasetPolicy, DatasetSummary, NodeRecord, NodeStatus, Role
from protocol.tensors import DTYPES
from protocol.values import PointerRef

ENVELOPE = ("v", "kind", "id")

_T = torch.zeros(2)
_INFO = ObjectInfo(ObjectId(1), "float32", (2,))
_FP = "sha256:" + "ab" * 32
_TICKET = bytes(32)
_RECORD = NodeRecord(
    NodeId("a"), "wss://a.example:8765", _FP, (Role.COMPUTE,), ("#t",),
    (DatasetSummary("d", ("#t",), "x", (2,), 2, DatasetPolicy(
        True, 10.0, 9.25, 1e-5, 1.0, 1.0, 16, 32, 3, 1_000_000, ("Linear", "ReLU"),
    )),),
)
_STATUS = NodeStatus(_RECORD, 1.0, True)
SPEC_EXAMPLES: dict[MessageKind, Message] = {
    MessageKind.HELLO: HelloRequest(RequestId(1), PROTOCOL_VERSION, "c", ("client",), {}),
    MessageKind.HELLO_REPLY: HelloReply(RequestId(1), NodeId("a"), "p", (), 1),
    MessageKind.PUT: PutRequest(RequestId(1), ObjectId(1), _T, private=True),
    MessageKind.GET: GetRequest(RequestId(1), ObjectId(1)),
    MessageKind.GET_REPLY: GetReply(RequestId(1), _T),
    MessageKind.DELETE: DeleteRequest(RequestId(1), (ObjectId(1),)),
    MessageKind.COMMAND: CommandRequest(
        RequestId(1), "neg", PointerRef(NodeId("a"), ObjectId(1)), (), {}, (ObjectId(2),)
    ),
    MessageKind.SYNC: SyncRequest(RequestId(1)),
    MessageKind.SYNC_REPLY: SyncReply(RequestId(1)),
    MessageKind.LIST: ListRequest(RequestId(1)),
    MessageKind.LIST_REPLY: ListReply(RequestId(1), (_INFO,)),
    MessageKind.DESCRIBE: DescribeRequest(RequestId(1), (ObjectId(1),)),
    MessageKind.DESCRIBE_REPLY: DescribeReply(RequestId(1), (_INFO,)),
    MessageKind.ERROR: ErrorReply(RequestId(1), "INTERNAL", "internal error", {}),
    MessageKind.ACK: AckReply(RequestId(1)),
    MessageKind.REGISTER: RegisterRequest(RequestId(1), _RECORD),
    MessageKind.REGISTER_REPLY: RegisterReply(RequestId(1), 2.0),
    MessageKind.HEARTBEAT: HeartbeatRequest(RequestId(1)),
    MessageKind.DEREGISTER: DeregisterRequest(RequestId(1)),
    MessageKind.NODES: NodesRequest(RequestId(1), "#t"),
    MessageKind.NODES_REPLY: NodesReply(RequestId(1), (_STATUS,)),
    MessageKind.EXPECT: ExpectRequest(RequestId(1), ObjectId(2), NodeId("a"), _FP, _TICKET),
    MessageKind.TRANSFER: TransferRequest(
        RequestId(1), ObjectId(1), NodeId("b"), "wss://b.example:8765", _FP, ObjectId(2), _TICKET, False
    ),
    MessageKind.DELIVER: DeliverRequest(
        RequestId(1), ObjectId(2), _TICKET, "uint8", (2,), 0, torch.zeros(2, dtype=torch.uint8), True,
        (("@mover", ("@mover",)),), True,
    ),
    MessageKind.PUT_CHUNK: PutChunkRequest(
        RequestId(1), ObjectId(2), "uint8", (2,), 0, torch.zeros(2, dtype=torch.uint8), True, True
    ),
    MessageKind.READ: ReadRequest(RequestId(1), ObjectId(2), 0, 2),
    MessageKind.READ_REPLY: ReadReply(RequestId(1), torch.zeros(2, dtype=torch.uint8)),
    MessageKind.RELEASE: ReleaseRequest(RequestId(1), ObjectId(1), "user:bob"),
}

SPEC_EXAMPLES.update(FEDERATED_EXAMPLES)
SPEC_EXAMPLES.update(MPC_EXAMPLES)
SPEC_EXAMPLES.update(SECAGG_EXAMPLES)

@pytest.fixture(scope="module")
def spec() -> str:
    return spec_text()


def _section_of(text: str, kind: MessageKind) -> str:
    found = [
        body
        for heading, body in sections(text).items()
        if re.match(r"### 6\.\d+ ", heading) and f"`{kind.value}`" in heading
    ]
    assert len(found) == 1, f"PROTOCOL.md needs exactly one section 6.x naming `{kind.value}`"
    return found[0]


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (escaped pipes stay inside their cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _table_row(text: str, name: str) -> str:
    """The first table row of ``text`` whose first cell is ``name`` in backticks."""
    rows = [line for line in text.splitlines() if line.startswith("|") and _cells(line)[0] == f"`{name}`"]
    assert rows, f"no table row for `{name}`"
    return rows[0]


def test_spec_examples_cover_every_kind() -> None:
    """The examples used to list wire fields include every kind."""
    assert set(SPEC_EXAMPLES) == set(MessageKind)


@pytest.mark.parametrize("kind", list(MessageKind), ids=lambda k: k.value)
def test_every_kind_is_documented(spec: str, kind: MessageKind) -> None:
    """Each kind has its own section and a row in the message summary table."""
    _section_of(spec, kind)
    row = _table_row(spec, kind.value)
    assert "client" in row or "node" in row


@pytest.mark.parametrize("kind", list(MessageKind), ids=lambda k: k.value)
def test_every_wire_field_is_documented_in_its_section(spec: str, kind: MessageKind) -> None:
    """Every field body_of produces for a kind has a table row in that kind's section."""
    section = _section_of(spec, kind)
    for field in body_of(SPEC_EXAMPLES[kind]):
        if field in ENVELOPE:
            continue
        _table_row(section, field)


def test_envelope_fields_are_documented(spec: str) -> None:
    """v, kind and id have rows in the envelope table, and body_of emits kind and id."""
    envelope = next(body for heading, body in sections(spec, "## ").items() if "Envelope" in heading)
    for field in ENVELOPE:
        _table_row(envelope, field)
    assert {"kind", "id"} <= set(body_of(SyncRequest(RequestId(1))))


def test_object_info_fields_are_documented(spec: str) -> None:
    """The ObjectInfo map's fields are documented."""
    body = body_of(ListReply(RequestId(1), (_INFO,)))
    assert "**ObjectInfo**" in spec
    for field in body["objects"][0]:
        _table_row(spec, field)


def test_node_record_maps_are_documented(spec: str) -> None:
    """Every field of NodeRecord, DatasetSummary and NodeStatus has a row in the records section."""
    section = next(
        body for heading, body in sections(spec).items() if re.match(r"### 6\.\d+ ", heading) and "NodeRecord" in heading
    )
    status = body_of(SPEC_EXAMPLES[MessageKind.NODES_REPLY])["nodes"][0]
    record = status["record"]
    for field in [*status, *record, *record["datasets"][0], *record["datasets"][0]["policy"]]:
        _table_row(section, field)


def _op_rows(spec: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in spec.splitlines():
        cells = _cells(line)
        if line.startswith("|") and len(cells) == 5 and re.fullmatch(r"`[A-Za-z0-9_]+`", cells[0]) and cells[1] in ("yes", "-"):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("name", list(OPS))
def test_every_op_is_documented(spec: str, name: str) -> None:
    """Every op in OPS has a row in PROTOCOL.md with its forms, result rule and doc."""
    rows = _op_rows(spec)
    assert name in rows, f"op {name} missing from PROTOCOL.md"
    method, function, results, doc = rows[name]
    op = OPS[name]
    assert method == ("yes" if op.method else "-")
    assert function == ("yes" if op.function else "-")
    expected = {ResultRule.ONE: "1", ResultRule.TWO: "2", ResultRule.TWO_WITH_DIM: "2 with dim, else 1",
                ResultRule.PER_INPUT: "1 per input"}
    assert results == expected[op.results]
    assert doc.replace("\\|", "|") == op.doc


def test_no_undocumented_ops_are_listed(spec: str) -> None:
    """The op table lists no op the allowlist lacks, and states the op count."""
    assert set(_op_rows(spec)) == set(OPS)
    assert f"({len(OPS)} ops)" in spec


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_dtype_is_documented_with_its_itemsize(spec: str, name: str) -> None:
    """The dtype allowlist table (section 5.1) lists each wire name with its item size."""
    tensor = next(body for heading, body in sections(spec).items() if "ext type 1" in heading)
    cells = _cells(_table_row(tensor, name))
    assert cells[1] == str(torch.empty((), dtype=DTYPES[name]).element_size())


@pytest.mark.parametrize("name", [n for n in dir(ExtCode) if n.isupper()])
def test_every_ext_code_is_documented(spec: str, name: str) -> None:
    """Each ext type code has a section headed with its number."""
    code = getattr(ExtCode, name)
    assert re.search(rf"^### 5\.\d .* — ext type {code}$", spec, re.MULTILINE), name


@pytest.mark.parametrize("name", limits.__all__)
def test_every_limit_is_documented_with_its_value(spec: str, name: str) -> None:
    """Each constant of limits.py has a row giving its value."""
    row = _table_row(spec, name).replace(" ", "")
    assert str(getattr(limits, name)) in row


@pytest.mark.parametrize(
    "message",
    [
        SyncRequest(RequestId(1)),
        PutRequest(RequestId(2), ObjectId(7), torch.tensor([1, 2], dtype=torch.int32)),
    ],
    ids=["sync", "put"],
)
def test_worked_examples_match_the_encoder(spec: str, message: Message) -> None:
    """The hex dumps in PROTOCOL.md are exactly what the encoder produces."""
    data = encode_message_bytes(message)
    assert contains_dump(spec, data)
    assert f"({len(data)} bytes)" in spec


def test_contents_name_every_section_in_order(spec: str) -> None:
    """The contents paragraph names every numbered section, in order, by its heading's first word."""
    contents = spec[spec.index("Contents:") : spec.index("---")]
    contents = " ".join(contents.split())
    headings = re.findall(r"^## (\d+)\. (\S+)", spec, re.MULTILINE)
    positions = []
    for number, word in headings:
        match = re.search(rf"\b{number} {re.escape(word.lower())}", contents)
        assert match, f"the contents omit section {number} ({word})"
        positions.append(match.start())
    assert positions == sorted(positions)
    assert len(re.findall(r"(?:^|, )(\d+) ", contents.removeprefix("Contents: "))) == len(headings)


def _summary_answers(spec: str) -> dict[str, str]:
    """Kind -> the 'answered with' cell of section 6's summary table."""
    rows = {}
    for line in sections(spec, "## ")["## 6. Messages"].splitlines():
        cells = _cells(line) if line.startswith("| `") else []
        if len(cells) == 3:
            rows[cells[0].strip("`")] = cells[2]
    return rows


def test_ack_section_lists_exactly_the_kinds_answered_with_ack(spec: str) -> None:
    """6.12 names every kind the summary table answers with ack, and no other."""
    acked = {kind for kind, answer in _summary_answers(spec).items() if answer.startswith("`ack`")}
    ack_section = next(body for heading, body in sections(spec).items() if heading.startswith("### 6.12 "))
    named = set(re.findall(r"`([a-z_]+)`", ack_section)) - {"ack", "id"}
    assert acked == named
    assert {"release", "secagg_setup", "secagg_split", "secagg_share"} <= named
    assert all(MessageKind(kind) for kind in named)


def test_the_envelope_states_both_directions_of_the_boolean_rule(spec: str) -> None:
    """Section 4 says booleans are never integers and integers never booleans (get.delete = 1 refused)."""
    envelope = " ".join(sections(spec, "## ")["## 4. Envelope"].split())
    assert "Booleans and integers never stand for each other" in envelope
    assert "`get.delete = 1`" in envelope


def test_the_envelope_states_when_an_error_carries_the_frames_id(spec: str) -> None:
    """Section 4 has the id rule tests/protocol/test_salvage.py checks: last id entry, read in order."""
    envelope = " ".join(sections(spec, "## ")["## 4. Envelope"].split())
    assert "**Which errors carry the frame's id.**" in envelope
    assert "the value of the **last** entry it read whose key is the str `id`" in envelope


def test_section_1_tells_clients_to_raise_their_receive_limit(spec: str) -> None:
    """A client must receive messages as large as hello_reply.max_message_bytes (section 1)."""
    transport = " ".join(sections(spec, "## ")["## 1. Transport"].split())
    assert "at least `hello_reply.max_message_bytes` bytes" in transport
