"""AnonymousAuthenticator: secrets in, stable unguessable principals out."""

from __future__ import annotations

import hashlib

import pytest

from node.server.auth import (
    ANONYMOUS_SCHEME,
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    AnonymousAuthenticator,
)
from protocol.errors import Unauthenticated
from protocol.ids import RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import HelloRequest

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


def test_long_scheme_is_truncated_in_the_error() -> None:
    """A refused scheme is quoted at most 32 characters long."""
    with pytest.raises(Unauthenticated) as caught:
        AnonymousAuthenticator().authenticate(hello({"scheme": "x" * 1000, "secret": SECRET}))
    assert caught.value.details == {"scheme": "x" * 32}
    assert "x" * 33 not in str(caught.value)
