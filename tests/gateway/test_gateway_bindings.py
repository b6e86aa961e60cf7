"""The bindings file: format, 0600 atomic writes, corrupt files, change detection, locked merges."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gateway.bindings import BINDINGS_FILE, Binding, BindingFile, decode_bindings, encode_bindings
from peer.security.identity import StateDirError
from protocol.ids import NodeId

ALICE = NodeId("alice")
BOB = NodeId("bob")
FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64
FP_X = "sha256:" + "c" * 64
T0 = 1_700_000_000.0


def test_encode_decode_round_trip() -> None:
    """A table survives encode and decode unchanged, ids sorted in the file."""
    table = {BOB: Binding(FP_B, T0 + 1), ALICE: Binding(FP_A, T0)}
    raw = encode_bindings(table)
    assert decode_bindings(raw) == table
    assert list(json.loads(raw)["bindings"]) == ["alice", "bob"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"\xff\xfe", "not JSON", id="not-utf8"),
        pytest.param(b"{", "not JSON", id="truncated"),
        pytest.param(b"[]", "version 1", id="list"),
        pytest.param(b'{"version": 2, "bindings": {}}', "version 1", id="version"),
        pytest.param(b'{"version": 1, "bindings": []}', "'bindings' must be an object", id="bindings-list"),
        pytest.param(b'{"version": 1, "bindings": {"": {}}}', "invalid node id", id="empty-id"),
        pytest.param(b'{"version": 1, "bindings": {"a": 3}}', "must be an object", id="entry-int"),
        pytest.param(
            b'{"version": 1, "bindings": {"a": {"fingerprint": "sha256:AA", "bound_at": 1}}}',
            "canonical", id="bad-fingerprint",
        ),
        pytest.param(
            json.dumps({"version": 1, "bindings": {"a": {"fingerprint": FP_A.upper(), "bound_at": 1}}}).encode(),
            "canonical", id="upper-case-fingerprint",
        ),
        pytest.param(
            json.dumps({"version": 1, "bindings": {"a": {"fingerprint": FP_A, "bound_at": True}}}).encode(),
            "numeric", id="bool-time",
        ),
        pytest.param(
            json.dumps({"version": 1, "bindings": {"a": {"fingerprint": FP_A, "bound_at": "NaN"}}}).encode(),
            "numeric", id="string-time",
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "", id="deep"),
    ],
)
def test_corrupt_file_is_one_line_state_dir_error(tmp_path: Path, raw: bytes, reason: str) -> None:
    """Any damaged bindings file is a StateDirError whose one-line message names the file and the reason."""
    (tmp_path / BINDINGS_FILE).write_bytes(raw)
    with pytest.raises(StateDirError) as failed:
        BindingFile(tmp_path).load()
    message = str(failed.value)
    assert "\n" not in message and f"{BINDINGS_FILE} is corrupt" in message and reason in message
    assert str(tmp_path) in message


def test_missing_file_is_an_empty_table(tmp_path: Path) -> None:
    """A gateway that never bound an id has no file: no bindings, and nothing is created by reading."""
    assert BindingFile(tmp_path / "state").load() == {}
    assert not (tmp_path / "state").exists()


def test_add_writes_a_private_file_atomically(tmp_path: Path) -> None:
    """add creates the state dir and a 0600 file holding the table, with no temporary file left."""
    file = BindingFile(tmp_path / "state")
    assert file.add({ALICE: Binding(FP_A, T0)}) == {ALICE: Binding(FP_A, T0)}
    assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
    assert BindingFile(tmp_path / "state").load() == {ALICE: Binding(FP_A, T0)}
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["bindings.json", "bindings.lock"]


def test_add_keeps_the_files_binding(tmp_path: Path) -> None:
    """An id the file already binds (the operator rebound it meanwhile) keeps the file's binding."""
    gateway, operator = BindingFile(tmp_path), BindingFile(tmp_path)
    gateway.load()
    operator.edit(lambda table: table.__setitem__(ALICE, Binding(FP_X, T0 + 5)))
    table = gateway.add({ALICE: Binding(FP_A, T0), BOB: Binding(FP_B, T0)})
    assert table == {ALICE: Binding(FP_X, T0 + 5), BOB: Binding(FP_B, T0)}


def test_no_update_is_lost_between_two_writers(tmp_path: Path) -> None:
    """The gateway's add and the operator's edit, each from its own stale view, both land."""
    gateway, operator = BindingFile(tmp_path), BindingFile(tmp_path)
    gateway.add({ALICE: Binding(FP_A, T0)})
    operator.load()
    gateway.add({BOB: Binding(FP_B, T0 + 1)})  # the operator's view is now stale
    operator.edit(lambda table: table.pop(ALICE))
    assert BindingFile(tmp_path).load() == {BOB: Binding(FP_B, T0 + 1)}


def test_changed_sees_other_writers_only(tmp_path: Path) -> None:
    """changed() is False after one's own load or write, True once another process replaced the file."""
    gateway, operator = BindingFile(tmp_path), BindingFile(tmp_path)
    assert not gateway.changed()  # no file, none loaded
    gateway.add({ALICE: Binding(FP_A, T0)})
    assert not gateway.changed()
    operator.edit(lambda table: table.__setitem__(ALICE, Binding(FP_X, T0)))
    assert gateway.changed()
    gateway.load()
    assert not gateway.changed()
    (tmp_path / BINDINGS_FILE).unlink()
    assert gateway.changed()


def test_edit_without_change_does_not_write(tmp_path: Path) -> None:
    """An edit that changes nothing leaves the file (and its inode) as it was."""
    file = BindingFile(tmp_path)
    file.add({ALICE: Binding(FP_A, T0)})
    before = os.stat(file.path).st_ino
    file.add({ALICE: Binding(FP_X, T0 + 9)})
    assert os.stat(file.path).st_ino == before and file.load() == {ALICE: Binding(FP_A, T0)}


def test_unwritable_state_dir_is_a_state_dir_error(tmp_path: Path) -> None:
    """A state dir that is a regular file gives a one-line StateDirError, not an OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateDirError, match="cannot create it"):
        BindingFile(blocker).add({ALICE: Binding(FP_A, T0)})
