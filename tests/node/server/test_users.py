"""UserDirectory: the users file (0600, keys not tokens), live reloads, checking hellos."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from node.server.users import USERS_FILE, UserDirectory, UsersFileError
from peer.security.proof import MAX_CLOCK_SKEW
from peer.security.tokens import new_user_token, parse_user_token, user_credentials, user_key
from protocol.errors import Unauthenticated

SERVER = "sha256:" + "5" * 64
OTHER_SERVER = "sha256:" + "6" * 64
NOW = 1_700_000_000.0


def directory(path: Path) -> UserDirectory:
    """A directory whose clock is frozen at NOW."""
    return UserDirectory(path, clock=lambda: NOW)


def hello_for(token_text: str, server: str = SERVER, now: float = NOW) -> dict[str, object]:
    return user_credentials(parse_user_token(token_text), server, now=now)


def corrupt(path: Path, content: bytes) -> None:
    """Overwrite the users file in place (a half-edited or damaged file)."""
    (path / USERS_FILE).write_bytes(content)


# -- operator side ---------------------------------------------------------------


def test_add_then_entries(tmp_path: Path) -> None:
    """Added users are listed sorted by name, with their token's key and an ISO-8601 UTC date."""
    users = UserDirectory(tmp_path)
    bob, alice = new_user_token("bob"), new_user_token("alice")
    users.add(bob)
    users.add(alice)
    entries = users.entries()
    assert [entry.name for entry in entries] == ["alice", "bob"]
    assert entries[0].key == user_key(alice) and entries[1].key == user_key(bob)
    assert all(len(entry.added) == 20 and entry.added.endswith("Z") for entry in entries)
    assert users.names() == {"alice", "bob"}


def test_add_creates_the_state_directory(tmp_path: Path) -> None:
    """Adding a user to a node that never ran creates its state directory and the file."""
    users = UserDirectory(tmp_path / "nodes" / "alice")
    users.add(new_user_token("bob"))
    assert (tmp_path / "nodes" / "alice" / USERS_FILE).is_file()


def test_adding_again_replaces_the_token(tmp_path: Path) -> None:
    """Re-adding a name keeps one entry whose key is the new token's; the old token stops working."""
    users = directory(tmp_path)
    old, new = new_user_token("bob"), new_user_token("bob")
    users.add(old)
    users.add(new)
    assert [entry.key for entry in users.entries()] == [user_key(new)]
    assert users.authenticate(hello_for(new.text), SERVER) == "user:bob"
    with pytest.raises(Unauthenticated, match="unknown user or wrong token"):
        users.authenticate(hello_for(old.text), SERVER)


def test_revoke(tmp_path: Path) -> None:
    """revoke removes an admitted user (True) and reports an unknown one (False)."""
    users = UserDirectory(tmp_path)
    users.add(new_user_token("bob"))
    users.add(new_user_token("carol"))
    assert users.revoke("bob") is True
    assert [entry.name for entry in users.entries()] == ["carol"]
    assert users.revoke("bob") is False
    assert users.revoke("nobody") is False


def test_missing_file_means_no_users(tmp_path: Path) -> None:
    """A node without a users file has no users and lists none."""
    users = UserDirectory(tmp_path)
    assert users.names() == frozenset() and users.entries() == []
    assert users.revoke("bob") is False


def test_file_is_private(tmp_path: Path) -> None:
    """users.json is mode 0600, even with a permissive umask, and no temporary file is left."""
    old_umask = os.umask(0)
    try:
        UserDirectory(tmp_path).add(new_user_token("bob"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / USERS_FILE).st_mode) == 0o600
    assert os.listdir(tmp_path) == [USERS_FILE]


def test_token_is_not_stored(tmp_path: Path) -> None:
    """The file holds the derived key, never the token text or its secret."""
    token = new_user_token("bob")
    UserDirectory(tmp_path).add(token)
    raw = (tmp_path / USERS_FILE).read_text()
    secret = token.text.rsplit(".", 1)[1]
    assert secret not in raw and token.text not in raw
    stored = json.loads(raw)["users"]["bob"]["key"]
    assert stored == user_key(token).hex()


# -- reloads -------------------------------------------------------------------------


def test_node_sees_users_added_and_revoked_by_the_cli(tmp_path: Path) -> None:
    """Another instance (the CLI) editing the file is picked up at the next names()/hello."""
    node = directory(tmp_path)
    cli = UserDirectory(tmp_path)
    assert node.names() == frozenset()
    bob = new_user_token("bob")
    cli.add(bob)
    assert node.names() == {"bob"}
    assert node.authenticate(hello_for(bob.text), SERVER) == "user:bob"
    cli.revoke("bob")
    with pytest.raises(Unauthenticated):
        node.authenticate(hello_for(bob.text), SERVER)
    assert node.names() == frozenset()


def test_deleting_the_file_revokes_everyone(tmp_path: Path) -> None:
    """Removing users.json while the node runs leaves it with no users."""
    node = directory(tmp_path)
    node.add(new_user_token("bob"))
    assert node.names() == {"bob"}
    (tmp_path / USERS_FILE).unlink()
    assert node.names() == frozenset()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"version": 1, "users": {', id="truncated-json"),
        pytest.param(b'{"version": 2, "users": {}}', id="wrong-version"),
        pytest.param(b'{"version": 1}', id="no-users"),
        pytest.param(b'{"version": 1, "users": []}', id="users-list"),
        pytest.param(b'{"version": 1, "users": {"Bob": {"key": "' + b"00" * 32 + b'"}}}', id="bad-name"),
        pytest.param(b'{"version": 1, "users": {"bob": {"key": "zz"}}}', id="key-not-hex"),
        pytest.param(b'{"version": 1, "users": {"bob": {"key": "0011"}}}', id="key-short"),
        pytest.param(b'{"version": 1, "users": {"bob": "00"}}', id="entry-str"),
        pytest.param(b'{"version": 1, "users": {"bob": {}}}', id="entry-no-key"),
        pytest.param(b"[]", id="list"),
        pytest.param(b"\xff\xfe{not utf-8", id="not-utf8"),
        pytest.param(b"[" * 100_000, id="deep-nesting"),
    ],
)
def test_corrupt_file_is_a_users_file_error(tmp_path: Path, content: bytes) -> None:
    """Any damaged users file is UsersFileError naming the file, for the node and the CLI alike."""
    corrupt(tmp_path, content)
    users = UserDirectory(tmp_path)
    with pytest.raises(UsersFileError, match="users.json"):
        users.names()
    with pytest.raises(UsersFileError, match="users.json"):
        users.entries()


@pytest.mark.parametrize(
    "content", [b'{"version": 1, "users": {', b"\xff\xfe", b"[" * 100_000],
    ids=["truncated-json", "not-utf8", "deep-nesting"],
)
def test_corrupt_file_keeps_the_users_loaded_before(tmp_path: Path, content: bytes) -> None:
    """While the file is damaged, hellos are checked against the users loaded before."""
    node = directory(tmp_path)
    bob = new_user_token("bob")
    node.add(bob)
    assert node.names() == {"bob"}
    corrupt(tmp_path, content)
    with pytest.raises(UsersFileError):
        node.names()
    assert node.authenticate(hello_for(bob.text), SERVER) == "user:bob"
    with pytest.raises(Unauthenticated, match="unknown user or wrong token"):
        node.authenticate(hello_for(new_user_token("eve").text), SERVER)


def test_fixed_file_is_reloaded(tmp_path: Path) -> None:
    """Once the operator repairs the file, its users take effect."""
    node = directory(tmp_path)
    corrupt(tmp_path, b"{")
    with pytest.raises(UsersFileError):
        node.names()
    carol = new_user_token("carol")
    (tmp_path / USERS_FILE).unlink()
    UserDirectory(tmp_path).add(carol)
    assert node.names() == {"carol"}
    assert node.authenticate(hello_for(carol.text), SERVER) == "user:carol"


# -- checking hellos ---------------------------------------------------------------


def test_admitted_user_authenticates(tmp_path: Path) -> None:
    """Fresh credentials of an admitted token prove the principal user:<name>."""
    users = directory(tmp_path)
    bob = new_user_token("bob")
    users.add(bob)
    assert users.authenticate(hello_for(bob.text), SERVER) == "user:bob"


def test_replayed_credentials_are_refused(tmp_path: Path) -> None:
    """The same credentials presented twice fail the second time; fresh ones still work."""
    users = directory(tmp_path)
    bob = new_user_token("bob")
    users.add(bob)
    credentials = hello_for(bob.text)
    users.authenticate(credentials, SERVER)
    with pytest.raises(Unauthenticated, match="replay"):
        users.authenticate(credentials, SERVER)
    assert users.authenticate(hello_for(bob.text), SERVER) == "user:bob"


@pytest.mark.parametrize("offset", [MAX_CLOCK_SKEW + 5, -(MAX_CLOCK_SKEW + 5)], ids=["past", "future"])
def test_clock_skew_is_refused(tmp_path: Path, offset: float) -> None:
    """Credentials timestamped beyond the allowed skew, either way, are refused."""
    users = directory(tmp_path)
    bob = new_user_token("bob")
    users.add(bob)
    with pytest.raises(Unauthenticated, match="clocks"):
        users.authenticate(hello_for(bob.text, now=NOW - offset), SERVER)


def test_skew_within_the_limit_is_accepted(tmp_path: Path) -> None:
    """A timestamp a little off (within MAX_CLOCK_SKEW) is accepted."""
    users = directory(tmp_path)
    bob = new_user_token("bob")
    users.add(bob)
    assert users.authenticate(hello_for(bob.text, now=NOW - MAX_CLOCK_SKEW + 5), SERVER) == "user:bob"


def test_credentials_for_another_server_are_refused(tmp_path: Path) -> None:
    """A hello made for one node cannot be presented to another."""
    users = directory(tmp_path)
    bob = new_user_token("bob")
    users.add(bob)
    with pytest.raises(Unauthenticated, match="unknown user or wrong token"):
        users.authenticate(hello_for(bob.text, server=OTHER_SERVER), SERVER)


def test_unknown_user_and_wrong_token_look_the_same(tmp_path: Path) -> None:
    """An unknown name and a known name with a wrong token get the identical refusal."""
    users = directory(tmp_path)
    users.add(new_user_token("bob"))
    with pytest.raises(Unauthenticated) as unknown:
        users.authenticate(hello_for(new_user_token("zed").text), SERVER)
    with pytest.raises(Unauthenticated) as wrong:
        users.authenticate(hello_for(new_user_token("bob").text), SERVER)
    assert str(unknown.value) == str(wrong.value)
    assert unknown.value.details == wrong.value.details == {}
    assert "python -m node users add" in str(wrong.value)
    assert "bob" not in str(wrong.value) and "zed" not in str(unknown.value)


def test_stolen_name_with_another_users_token_is_refused(tmp_path: Path) -> None:
    """Carol's valid token relabelled as bob's does not make carol bob."""
    users = directory(tmp_path)
    users.add(new_user_token("bob"))
    carol = new_user_token("carol")
    users.add(carol)
    credentials = dict(hello_for(carol.text), user="bob")
    with pytest.raises(Unauthenticated, match="unknown user or wrong token"):
        users.authenticate(credentials, SERVER)


def test_malformed_credentials_are_unauthenticated(tmp_path: Path) -> None:
    """Token credentials with a missing field are Unauthenticated, not a crash."""
    users = directory(tmp_path)
    bob = new_user_token("bob")
    users.add(bob)
    credentials = hello_for(bob.text)
    del credentials["nonce"]
    with pytest.raises(Unauthenticated, match="need user, timestamp, nonce"):
        users.authenticate(credentials, SERVER)
