"""User and network tokens: format, parsing, MACs bound to user, server and moment."""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any, Mapping

import pytest

from peer.security.tokens import (
    INSECURE_SERVER,
    MIN_NETWORK_TOKEN_CHARS,
    TOKEN_SCHEME,
    UserToken,
    membership_mac,
    network_key,
    new_network_token,
    new_user_token,
    parse_user_token,
    token_fields,
    user_credentials,
    user_key,
    user_mac,
    user_payload,
    validate_network_token,
)
from node.server.users import UserDirectory
from protocol.errors import Unauthenticated
from tests.protocol.spec_text import code_blocks, contains_dump, section, spec_text

SERVER = "sha256:" + "5" * 64
OTHER_SERVER = "sha256:" + "6" * 64
SECRET = "A" * 43
TOKEN_TEXT = f"tsr1.bob.{SECRET}"


def _verifies(credentials: Mapping[str, Any], token: UserToken, server: str) -> bool:
    """Recompute the MAC as a node would and compare."""
    expected = user_mac(
        user_key(token), credentials["user"], server, credentials["timestamp"], credentials["nonce"]
    )
    return hmac.compare_digest(credentials["mac"], expected)


# -- format and parsing -------------------------------------------------------


def test_new_token_has_the_documented_format() -> None:
    """A new token is tsr1.<user>.<43 url-safe base64 characters> and names its user."""
    token = new_user_token("bob")
    assert token.user == "bob"
    assert re.fullmatch(r"tsr1\.bob\.[A-Za-z0-9_-]{43}", token.text)


def test_new_token_round_trips_through_parse() -> None:
    """parse_user_token of a new token's text gives back an equal token."""
    token = new_user_token("carol_2-x")
    assert parse_user_token(token.text) == token


def test_parse_ignores_surrounding_whitespace() -> None:
    """Blanks and a trailing newline (as read from a file) are stripped."""
    token = parse_user_token(f"  {TOKEN_TEXT}\n\t")
    assert token.user == "bob" and token.text == TOKEN_TEXT


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(f"tsr2.bob.{SECRET}", id="wrong-version"),
        pytest.param(f"tsn1.bob.{SECRET}", id="network-prefix"),
        pytest.param(f"TSR1.bob.{SECRET}", id="prefix-case"),
        pytest.param(f"bob.{SECRET}", id="no-prefix"),
        pytest.param(f"tsr1.bob.{SECRET[:-1]}", id="secret-too-short"),
        pytest.param(f"tsr1.bob.{SECRET}A", id="secret-too-long"),
        pytest.param(f"tsr1.bob.{SECRET[:-1]}=", id="secret-padding"),
        pytest.param(f"tsr1.bob.{SECRET[:-1]}+", id="secret-not-url-safe"),
        pytest.param(f"tsr1.Bob.{SECRET}", id="user-uppercase"),
        pytest.param(f"tsr1._bob.{SECRET}", id="user-leading-underscore"),
        pytest.param(f"tsr1.-bob.{SECRET}", id="user-leading-dash"),
        pytest.param(f"tsr1.{'b' * 33}.{SECRET}", id="user-too-long"),
        pytest.param(f"tsr1..{SECRET}", id="user-empty"),
        pytest.param(f"tsr1.b.o.b.{SECRET}", id="user-dots"),
        pytest.param(f"tsr1.bob {SECRET}", id="space-separator"),
        pytest.param(f"tsr1.bob.{SECRET[:20]} {SECRET[20:]}", id="inner-space"),
    ],
)
def test_malformed_tokens_are_refused(text: str) -> None:
    """Wrong prefix, length, alphabet or user name: ValueError naming the expected form."""
    with pytest.raises(ValueError, match=r"tsr1\.<user>"):
        parse_user_token(text)


def test_longest_user_name_is_accepted() -> None:
    """A 32-character user name is the upper bound, inclusive."""
    assert parse_user_token(f"tsr1.{'b' * 32}.{SECRET}").user == "b" * 32


@pytest.mark.parametrize(
    "name", ["", "Bob", "_bob", "-bob", "b" * 33, "bob smith", "bob.x", "böb", "../x"]
)
def test_new_token_refuses_bad_user_names(name: str) -> None:
    """Issuing a token for a name outside [a-z0-9][a-z0-9_-]{0,31} is a ValueError."""
    with pytest.raises(ValueError, match="invalid user name"):
        new_user_token(name)


def test_repr_hides_the_secret() -> None:
    """repr (and so logs and tracebacks) show the user but not the token text."""
    token = new_user_token("bob")
    secret = token.text.rsplit(".", 1)[1]
    for shown in (repr(token), str(token), f"{token}", repr([token])):
        assert "bob" in shown and secret not in shown


def test_new_user_tokens_are_unique() -> None:
    """Tokens issued for the same name never repeat."""
    texts = {new_user_token("bob").text for _ in range(200)}
    assert len(texts) == 200


# -- user credentials ----------------------------------------------------------


def test_user_credentials_fields() -> None:
    """Credentials carry scheme 'token', the user, the given time, a 16-byte nonce and a MAC."""
    token = parse_user_token(TOKEN_TEXT)
    credentials = user_credentials(token, SERVER, now=1_700_000_000.7)
    assert set(credentials) == {"scheme", "user", "timestamp", "nonce", "mac"}
    assert credentials["scheme"] == TOKEN_SCHEME == "token"
    assert credentials["user"] == "bob"
    assert credentials["timestamp"] == 1_700_000_000
    assert isinstance(credentials["nonce"], bytes) and len(credentials["nonce"]) == 16
    assert isinstance(credentials["mac"], bytes) and len(credentials["mac"]) == 32
    assert token_fields(credentials) == (
        "bob", 1_700_000_000, credentials["nonce"], credentials["mac"]
    )


def test_user_credentials_do_not_carry_the_token() -> None:
    """Neither the token text nor its secret, nor the stored key, appear in the credentials."""
    token = parse_user_token(TOKEN_TEXT)
    credentials = user_credentials(token, SERVER)
    rendered = repr(credentials)
    assert SECRET not in rendered and TOKEN_TEXT not in rendered
    assert user_key(token) not in credentials.values()


def test_user_credentials_verify_for_their_server() -> None:
    """The MAC recomputed with the stored key and the same fields matches."""
    token = parse_user_token(TOKEN_TEXT)
    assert _verifies(user_credentials(token, SERVER), token, SERVER)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"user": "eve"}, id="user"),
        pytest.param({"timestamp": 1_700_000_001}, id="timestamp"),
        pytest.param({"nonce": b"\x00" * 16}, id="nonce"),
    ],
)
def test_changing_any_field_breaks_the_mac(change: dict[str, object]) -> None:
    """Editing the user, timestamp or nonce after the MAC was made makes it fail."""
    token = parse_user_token(TOKEN_TEXT)
    credentials = dict(user_credentials(token, SERVER, now=1_700_000_000), **change)
    assert not _verifies(credentials, token, SERVER)


def test_mac_is_bound_to_the_server() -> None:
    """Credentials made for one server do not verify for another, nor for 'insecure'."""
    token = parse_user_token(TOKEN_TEXT)
    credentials = user_credentials(token, SERVER)
    assert not _verifies(credentials, token, OTHER_SERVER)
    assert not _verifies(credentials, token, INSECURE_SERVER)


def test_no_fingerprint_binds_to_insecure() -> None:
    """Without a server fingerprint the MAC binds to the 'insecure' marker."""
    token = parse_user_token(TOKEN_TEXT)
    assert _verifies(user_credentials(token, None), token, INSECURE_SERVER)


def test_mac_is_bound_to_the_token() -> None:
    """Another token of the same user does not verify the credentials."""
    token = parse_user_token(TOKEN_TEXT)
    other = parse_user_token(f"tsr1.bob.{'B' * 43}")
    assert not _verifies(user_credentials(token, SERVER), other, SERVER)


def test_each_credential_has_a_fresh_nonce() -> None:
    """Two credentials made in the same second differ in nonce and MAC."""
    token = parse_user_token(TOKEN_TEXT)
    first = user_credentials(token, SERVER, now=5)
    second = user_credentials(token, SERVER, now=5)
    assert first["nonce"] != second["nonce"] and first["mac"] != second["mac"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"user": "Bob"}, id="bad-user"),
        pytest.param({"user": 7}, id="user-int"),
        pytest.param({"timestamp": True}, id="timestamp-bool"),
        pytest.param({"timestamp": 1.5}, id="timestamp-float"),
        pytest.param({"nonce": b"\x00" * 15}, id="short-nonce"),
        pytest.param({"nonce": "0" * 16}, id="nonce-str"),
        pytest.param({"mac": "ab"}, id="mac-str"),
        pytest.param({"mac": None}, id="mac-nil"),
    ],
)
def test_token_fields_type_checks(change: dict[str, object]) -> None:
    """Mistyped token credentials are Unauthenticated, not a crash."""
    credentials = dict(user_credentials(parse_user_token(TOKEN_TEXT), SERVER), **change)
    with pytest.raises(Unauthenticated, match="token credentials need"):
        token_fields(credentials)


# -- keys and the network token ------------------------------------------------


def test_user_and_network_keys_differ_for_the_same_string() -> None:
    """One string used as both a user and a network token yields unrelated 32-byte keys."""
    user = user_key(parse_user_token(TOKEN_TEXT))
    network = network_key(TOKEN_TEXT)
    assert len(user) == len(network) == 32
    assert user != network


def test_network_key_depends_on_the_token() -> None:
    """Different network tokens give different keys; the same token the same key."""
    assert network_key("a" * 20) == network_key("a" * 20)
    assert network_key("a" * 20) != network_key("a" * 19 + "b")


def test_membership_mac_depends_on_key_and_payload() -> None:
    """The membership MAC changes with the network key and with the signed bytes."""
    key, other = network_key("a" * 20), network_key("b" * 20)
    assert membership_mac(key, b"payload") == membership_mac(key, b"payload")
    assert membership_mac(key, b"payload") != membership_mac(other, b"payload")
    assert membership_mac(key, b"payload") != membership_mac(key, b"payloaD")


def test_new_network_token_format_and_uniqueness() -> None:
    """New network tokens are tsn1.<43 characters>, valid, and never repeat."""
    tokens = {new_network_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert re.fullmatch(r"tsn1\.[A-Za-z0-9_-]{43}", token)
        assert validate_network_token(token) == token


def test_validate_network_token_length_rule() -> None:
    """Exactly 16 characters is enough; 15 is refused with a hint to new-token."""
    assert validate_network_token("x" * MIN_NETWORK_TOKEN_CHARS) == "x" * 16
    with pytest.raises(ValueError, match=r"at least 16 characters.*new-token"):
        validate_network_token("x" * (MIN_NETWORK_TOKEN_CHARS - 1))


def test_validate_network_token_strips_blanks_before_counting() -> None:
    """Blanks around the token are removed, and do not count towards the length."""
    assert validate_network_token("\n  " + "x" * 16 + " \n") == "x" * 16
    with pytest.raises(ValueError):
        validate_network_token(" " * 10 + "x" * 15 + "\n")
    with pytest.raises(ValueError):
        validate_network_token(" " * 40)


# -- PROTOCOL.md 15.4: the user token MAC, byte for byte ------------------------

VECTOR_TIMESTAMP = 1764000000
VECTOR_NONCE = bytes(range(16))
VECTOR_SERVER = "sha256:" + "ab" * 32


def _vector_section() -> tuple[str, dict[str, str]]:
    """15.4's text and its ``name  hex`` lines (key, mac, mac insecure)."""
    text = section(spec_text(), "### 15.4 ")
    values: dict[str, str] = {}
    for block in code_blocks(text):
        for line in block.splitlines():
            match = re.fullmatch(r"(key|mac|mac insecure)\s+([0-9a-f]{64})", line.strip())
            if match:
                values[match.group(1)] = match.group(2)
    return text, values


def test_the_spec_token_vector_is_what_the_code_computes() -> None:
    """PROTOCOL.md 15.4's token, key, payload dump and MACs are exactly what tokens.py makes."""
    text, values = _vector_section()
    token = parse_user_token(code_blocks(text)[0])
    assert token.user == "alice" and token.text.endswith("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
    key = user_key(token)
    assert values["key"] == key.hex()
    payload = user_payload("alice", VECTOR_SERVER, VECTOR_TIMESTAMP, VECTOR_NONCE)
    assert contains_dump(text, payload) and f"({len(payload)}-byte payload)" in spec_text()
    assert values["mac"] == user_mac(key, "alice", VECTOR_SERVER, VECTOR_TIMESTAMP, VECTOR_NONCE).hex()
    assert values["mac insecure"] == user_mac(key, "alice", INSECURE_SERVER, VECTOR_TIMESTAMP, VECTOR_NONCE).hex()


def test_a_node_accepts_the_spec_token_vector(tmp_path: Path) -> None:
    """The credentials 15.4 builds open a hello on a node that admitted the token, at that moment."""
    text, values = _vector_section()
    token = parse_user_token(code_blocks(text)[0])
    users = UserDirectory(tmp_path, clock=lambda: float(VECTOR_TIMESTAMP))
    users.add(token)
    credentials = {"scheme": TOKEN_SCHEME, "user": "alice", "timestamp": VECTOR_TIMESTAMP,
                   "nonce": VECTOR_NONCE, "mac": bytes.fromhex(values["mac"])}
    assert users.authenticate(credentials, VECTOR_SERVER) == "user:alice"
