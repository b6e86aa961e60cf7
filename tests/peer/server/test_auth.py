"""Authenticators: anonymous secrets, and which credential schemes a node or gateway accepts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from peer.server.auth import (
    ANONYMOUS_SCHEME,
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    AnonymousAuthenticator,
    Caller,
    CredentialAuthenticator,
)
from node.server.users import UserDirectory
from peer.security.identity import Identity, ensure_identity
from peer.security.proof import node_credentials
from peer.security.tokens import UserToken, network_key, new_user_token, user_credentials
from protocol.errors import Unauthenticated
from protocol.ids import RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import HelloRequest
from tests.protocol.spec_text import section, spec_text

SECRET = bytes(range(32))


def hello(credentials: dict[str, object]) -> HelloRequest:
    return HelloRequest(RequestId(1), PROTOCOL_VERSION, "tests", (), credentials)  # type: ignore[arg-type]


def principal_for(secret: object) -> str:
    return AnonymousAuthenticator().authenticate(
        hello({"scheme": ANONYMOUS_SCHEME, "secret": secret})
    ).principal


def test_principal_is_stable_for_the_same_secret() -> None:
    """The same secret gives the same principal across hellos and authenticator instances."""
    first = principal_for(SECRET)
    again = AnonymousAuthenticator().authenticate(
        hello({"secret": bytes(SECRET), "scheme": "anonymous", "extra": 1})
    ).principal
    assert first == again == principal_for(bytes(bytearray(SECRET)))


def test_principal_is_anon_and_a_sha256_prefix() -> None:
    """The principal is 'anon-' plus the first 16 hex digits of SHA-256(secret) (PROTOCOL.md 6.1)."""
    assert principal_for(SECRET) == "anon-" + hashlib.sha256(SECRET).hexdigest()[:16]


def test_principals_differ_across_secrets() -> None:
    """Distinct secrets, even one bit apart, give distinct principals."""
    flipped = bytes([SECRET[0] ^ 1]) + SECRET[1:]
    secrets = [SECRET, flipped, SECRET + b"\x00", b"\x00" * 16, b"\x00" * 17, b"\xff" * 64]
    principals = {principal_for(s) for s in secrets}
    assert len(principals) == len(secrets)


@pytest.mark.parametrize("secret", [b"A" * 16, b"correct horse battery staple!!", bytes(range(64))])
def test_principal_does_not_contain_the_secret(secret: bytes) -> None:
    """Neither the secret's bytes, its text nor its hex appear in the principal."""
    principal = principal_for(secret)
    for form in (secret.decode("latin-1"), secret.hex(), secret.hex()[:16]):
        assert form not in principal


@pytest.mark.parametrize("size", [MIN_SECRET_BYTES, MAX_SECRET_BYTES])
def test_secret_length_bounds_are_inclusive(size: int) -> None:
    """Secrets of exactly 16 and exactly 64 bytes are accepted."""
    assert principal_for(b"k" * size).startswith("anon-")


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"scheme": "token", "secret": SECRET}, id="other-scheme"),
        pytest.param({"scheme": "Anonymous", "secret": SECRET}, id="scheme-case"),
        pytest.param({"scheme": b"anonymous", "secret": SECRET}, id="scheme-bytes"),
        pytest.param({"scheme": None, "secret": SECRET}, id="scheme-nil"),
        pytest.param({"secret": SECRET}, id="scheme-missing"),
        pytest.param({}, id="empty"),
    ],
)
def test_bad_scheme_is_unauthenticated(credentials: dict[str, object]) -> None:
    """Any scheme other than the string 'anonymous' is refused with Unauthenticated."""
    with pytest.raises(Unauthenticated):
        AnonymousAuthenticator().authenticate(hello(credentials))


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"k" * (MIN_SECRET_BYTES - 1), id="too-short"),
        pytest.param(b"k" * (MAX_SECRET_BYTES + 1), id="too-long"),
        pytest.param("k" * 32, id="str"),
        pytest.param(12345678901234567890, id="int"),
        pytest.param([1] * 32, id="list"),
        pytest.param(None, id="nil"),
    ],
)
def test_bad_secret_is_unauthenticated(secret: object) -> None:
    """A secret that is not 16-64 bytes of bin is refused with Unauthenticated."""
    with pytest.raises(Unauthenticated):
        principal_for(secret)


def test_missing_secret_is_unauthenticated() -> None:
    """Anonymous credentials without a secret are refused."""
    with pytest.raises(Unauthenticated):
        AnonymousAuthenticator().authenticate(hello({"scheme": ANONYMOUS_SCHEME}))


@pytest.mark.parametrize(
    "credentials",
    [{"scheme": "token", "secret": SECRET}, {"scheme": ANONYMOUS_SCHEME, "secret": SECRET[:8]}],
    ids=["bad-scheme", "short-secret"],
)
def test_refusal_does_not_echo_the_secret(credentials: dict[str, object]) -> None:
    """The Unauthenticated error's message and details never carry the secret."""
    with pytest.raises(Unauthenticated) as caught:
        AnonymousAuthenticator().authenticate(hello(credentials))
    rendered = str(caught.value) + repr(caught.value.details)
    secret = credentials["secret"]
    assert isinstance(secret, bytes)
    assert secret.hex() not in rendered and repr(secret) not in rendered


@pytest.mark.parametrize(
    "credentials",
    [{"secret": SECRET}, {"scheme": None}, {"scheme": 5}, {"scheme": b"anonymous"}, {"scheme": ["token"]}],
    ids=["missing", "nil", "int", "bin", "array"],
)
def test_a_scheme_that_is_not_a_str_is_named_nil_in_the_details(credentials: dict[str, object]) -> None:
    """No str scheme: details {"scheme": nil}, never a Python type name (PROTOCOL.md 6.1)."""
    for authenticator in (AnonymousAuthenticator(), CredentialAuthenticator(SERVER, anonymous=True)):
        with pytest.raises(Unauthenticated) as caught:
            authenticator.authenticate(hello(credentials))
        assert caught.value.details == {"scheme": None}
        assert "NoneType" not in str(caught.value) and "bytes" not in str(caught.value)


def test_long_scheme_is_truncated_in_the_error() -> None:
    """A refused scheme is quoted at most 32 characters long."""
    with pytest.raises(Unauthenticated) as caught:
        AnonymousAuthenticator().authenticate(hello({"scheme": "x" * 1000, "secret": SECRET}))
    assert caught.value.details == {"scheme": "x" * 32}
    assert "x" * 33 not in str(caught.value)


# -- CredentialAuthenticator: which schemes a node or gateway accepts ------------

SERVER = "sha256:" + "5" * 64
NETWORK_TOKEN = "tsn1.network-token-for-the-auth-tests"
NETWORK = network_key(NETWORK_TOKEN)


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return ensure_identity(tmp_path_factory.mktemp("alice"), "alice")


@pytest.fixture
def bob_token() -> UserToken:
    return new_user_token("bob")


@pytest.fixture
def users(tmp_path: Path, bob_token: UserToken) -> UserDirectory:
    directory = UserDirectory(tmp_path / "users")
    directory.add(bob_token)
    return directory


def credentials_for(scheme: str, alice: Identity, bob: UserToken, member: bool = True) -> dict[str, object]:
    """Valid, fresh credentials of ``scheme`` (node proofs with or without membership)."""
    if scheme == "token":
        return user_credentials(bob, SERVER)
    if scheme == "node":
        return node_credentials(alice, "alice", SERVER, network=NETWORK if member else None)
    return {"scheme": ANONYMOUS_SCHEME, "secret": SECRET}


# (users, network, open_network, anonymous) -> schemes accepted, of token / node / anonymous.
MATRIX = [
    pytest.param(False, False, False, False, set(), id="nothing"),
    pytest.param(True, False, False, False, {"token"}, id="node-users-only"),
    pytest.param(True, True, False, False, {"token", "node"}, id="node-in-network"),
    pytest.param(True, False, False, True, {"token", "anonymous"}, id="node-allow-anonymous"),
    pytest.param(True, True, False, True, {"token", "node", "anonymous"}, id="node-everything"),
    pytest.param(False, True, False, True, {"node", "anonymous"}, id="gateway"),
    pytest.param(False, False, True, True, {"node", "anonymous"}, id="gateway-open"),
]


@pytest.mark.parametrize(("with_users", "with_network", "open_network", "anonymous", "accepted"), MATRIX)
@pytest.mark.parametrize("scheme", ["token", "node", "anonymous"])
def test_scheme_matrix(
    scheme: str, with_users: bool, with_network: bool, open_network: bool, anonymous: bool,
    accepted: set[str], alice: Identity, bob_token: UserToken, users: UserDirectory,
) -> None:
    """Each scheme is accepted exactly when its configuration enables it, else Unauthenticated."""
    authenticator = CredentialAuthenticator(
        SERVER,
        network=NETWORK if with_network else None,
        open_network=open_network,
        users=users if with_users else None,
        anonymous=anonymous,
    )
    request = hello(credentials_for(scheme, alice, bob_token))
    if scheme in accepted:
        assert authenticator.authenticate(request).principal
    else:
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(request)


def test_user_token_gives_the_user_principal(users: UserDirectory, bob_token: UserToken) -> None:
    """A user token proves user:<name>, with no node id or fingerprint on the caller."""
    caller = CredentialAuthenticator(SERVER, users=users).authenticate(
        hello(user_credentials(bob_token, SERVER))
    )
    assert caller == Caller("user:bob")


def test_user_token_is_bound_to_this_server(users: UserDirectory, bob_token: UserToken) -> None:
    """Credentials made for another fingerprint, or for 'insecure', are refused."""
    authenticator = CredentialAuthenticator(SERVER, users=users)
    for server in ("sha256:" + "6" * 64, None):
        with pytest.raises(Unauthenticated, match="unknown user or wrong token"):
            authenticator.authenticate(hello(user_credentials(bob_token, server)))


def test_insecure_server_checks_tokens_against_insecure(users: UserDirectory, bob_token: UserToken) -> None:
    """A server without a fingerprint (--insecure) accepts credentials made with none."""
    authenticator = CredentialAuthenticator(None, users=users)
    assert authenticator.authenticate(hello(user_credentials(bob_token, None))).principal == "user:bob"


def test_node_proof_gives_the_node_principal(alice: Identity) -> None:
    """A member's proof names node:<id>@<16 fingerprint hex digits> and carries id and fingerprint."""
    caller = CredentialAuthenticator(SERVER, network=NETWORK).authenticate(
        hello(node_credentials(alice, "alice", SERVER, network=NETWORK))
    )
    assert caller.principal == f"node:alice@{alice.fingerprint[7:23]}"
    assert caller.node_id == "alice" and caller.fingerprint == alice.fingerprint


def test_network_requires_membership(alice: Identity) -> None:
    """With a network key, a node proof without the membership MAC is refused."""
    authenticator = CredentialAuthenticator(SERVER, network=NETWORK, anonymous=True)
    with pytest.raises(Unauthenticated, match="membership"):
        authenticator.authenticate(hello(node_credentials(alice, "alice", SERVER)))
    other = network_key("tsn1.some-other-network-token")
    with pytest.raises(Unauthenticated, match="membership"):
        authenticator.authenticate(hello(node_credentials(alice, "alice", SERVER, network=other)))


def test_open_network_admits_any_key_pair(alice: Identity) -> None:
    """An open gateway (no network key) accepts node proofs without membership."""
    authenticator = CredentialAuthenticator(SERVER, open_network=True)
    caller = authenticator.authenticate(hello(node_credentials(alice, "alice", SERVER)))
    assert caller.node_id == "alice"


def test_anonymous_on_a_users_node_says_how_to_get_a_token(users: UserDirectory) -> None:
    """Refusing an anonymous client on a node with users names TESSERA_TOKEN and 'users add'."""
    with pytest.raises(Unauthenticated) as caught:
        CredentialAuthenticator(SERVER, users=users).authenticate(
            hello({"scheme": ANONYMOUS_SCHEME, "secret": SECRET})
        )
    message = str(caught.value)
    assert "does not accept anonymous clients" in message
    assert "TESSERA_TOKEN" in message and "python -m node users add" in message
    assert caught.value.details == {"scheme": "anonymous"}


def test_node_scheme_without_a_network_says_so(alice: Identity, users: UserDirectory) -> None:
    """A node proof at a node with no network token is refused saying it is in no network."""
    with pytest.raises(Unauthenticated, match="in no network") as caught:
        CredentialAuthenticator(SERVER, users=users).authenticate(
            hello(node_credentials(alice, "alice", SERVER, network=NETWORK))
        )
    assert caught.value.details == {"scheme": "node"}


def test_token_at_the_gateway_is_an_unaccepted_scheme(bob_token: UserToken) -> None:
    """Without a users directory (the gateway), a user token is 'not accepted here'."""
    authenticator = CredentialAuthenticator(SERVER, network=NETWORK, anonymous=True)
    with pytest.raises(Unauthenticated, match="'token' is not accepted here"):
        authenticator.authenticate(hello(user_credentials(bob_token, SERVER)))


@pytest.mark.parametrize("scheme", ["password", "Token", "NODE", ""])
def test_unknown_schemes_are_refused(scheme: str, users: UserDirectory) -> None:
    """Schemes outside token/node/anonymous (case-sensitive) are refused by every configuration."""
    authenticator = CredentialAuthenticator(
        SERVER, network=NETWORK, users=users, anonymous=True
    )
    with pytest.raises(Unauthenticated, match="is not accepted here"):
        authenticator.authenticate(hello({"scheme": scheme, "secret": SECRET}))


def test_anonymous_on_an_anonymous_node_keeps_the_anon_principal(users: UserDirectory) -> None:
    """With --allow-anonymous, an anonymous client gets the same anon- principal as before."""
    caller = CredentialAuthenticator(SERVER, users=users, anonymous=True).authenticate(
        hello({"scheme": ANONYMOUS_SCHEME, "secret": SECRET})
    )
    assert caller == Caller(principal_for(SECRET))


# -- PROTOCOL.md says what the principals are ------------------------------------

PRINCIPAL_FORMS = {
    "token": ("`user:<user>`", r"user:bob"),
    "node": ("`node:<node_id>@<first 16 hex digits of the certificate fingerprint>`", r"node:alice@[0-9a-f]{16}"),
    "anonymous": ("`anon-<first 16 hex digits of SHA-256(secret)>`", r"anon-[0-9a-f]{16}"),
}


@pytest.mark.parametrize("scheme", list(PRINCIPAL_FORMS))
def test_hello_reply_principals_are_the_forms_the_spec_names(
    scheme: str, alice: Identity, bob_token: UserToken, users: UserDirectory
) -> None:
    """Each scheme's principal has the form PROTOCOL.md 6.2 gives for hello_reply.principal."""
    documented, pattern = PRINCIPAL_FORMS[scheme]
    row = next(
        line for line in section(spec_text(), "### 6.2 ").splitlines() if line.startswith("| `principal` |")
    )
    assert f"{documented} (`{scheme}`)" in row
    authenticator = CredentialAuthenticator(SERVER, network=NETWORK, users=users, anonymous=True)
    principal = authenticator.authenticate(hello(credentials_for(scheme, alice, bob_token))).principal
    assert re.fullmatch(pattern, principal), principal
    if scheme == "node":
        assert principal == "node:alice@" + alice.fingerprint[len("sha256:") :][:16]


def test_the_spec_states_the_nil_scheme_detail() -> None:
    """PROTOCOL.md 6.1 says a missing or non-str scheme is named nil in the details, as the node does."""
    assert '`{"scheme": nil}` when `scheme` is missing or not a str' in " ".join(
        section(spec_text(), "### 6.1 ").split()
    )
