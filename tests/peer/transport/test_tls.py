"""Node identity, TLS contexts and peer trust, with real handshakes on loopback."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from peer.transport.tls import (
    CertificateMismatch,
    Identity,
    KnownNodes,
    StateDirError,
    TrustError,
    TrustMode,
    TrustOnFirstUseWarning,
    TrustPolicy,
    client_ssl_context,
    ensure_identity,
    fingerprint_of,
    normalize_fingerprint,
    server_ssl_context,
    verify_peer,
)

ADDRESS = "127.0.0.1:8765"
OTHER_FP = "sha256:" + "ab" * 32
BAD_KEY = "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n"


@contextmanager
def serving(identity: Identity) -> Iterator[int]:
    """A one-connection TLS server on 127.0.0.1 that sends b"ok"; yields its port."""
    context = server_ssl_context(identity)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            conn.settimeout(10)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except OSError:
                pass  # the client refused us; the client side asserts on that

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)


def connect(port: int, context: ssl.SSLContext, hostname: str) -> tuple[bytes | None, bytes]:
    """Handshake with the server, return the peer's DER certificate and first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            return tls.getpeercert(binary_form=True), tls.recv(2)


def test_identity_created_with_private_modes(tmp_path: Path) -> None:
    """First start creates the state dir 0700, key.pem 0600 and cert.pem 0644."""
    state = tmp_path / "deep" / "state"
    identity = ensure_identity(state, "alice")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(identity.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(identity.cert_path.stat().st_mode) == 0o644
    assert identity.fingerprint == fingerprint_of(identity.cert_der)
    assert sorted(p.name for p in state.iterdir()) == ["cert.pem", "key.pem"]  # no temp files left


def test_identity_reloaded_unchanged(tmp_path: Path) -> None:
    """A second start loads the same key and certificate, so the fingerprint is stable."""
    first = ensure_identity(tmp_path / "s", "alice")
    second = ensure_identity(tmp_path / "s", "alice", ["example.org"])
    assert second == first


def test_certificate_names(tmp_path: Path) -> None:
    """SANs hold loopback, given hosts (IP literals as IPs), no wildcard binds, no duplicates."""
    hosts = ["0.0.0.0", "::", "Node.Example", "10.1.2.3", "localhost"]
    identity = ensure_identity(tmp_path / "s", "alice", hosts)
    cert = x509.load_der_x509_certificate(identity.cert_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert dns.count("localhost") == 1 and "node.example" in dns
    assert ips == ["127.0.0.1", "::1", "10.1.2.3"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_cert_is_its_own_ca(tmp_path: Path, hostname: str) -> None:
    """cert.pem as a cafile verifies the node, hostname included, in a real handshake."""
    identity = ensure_identity(tmp_path / "s", "alice")
    policy = TrustPolicy(cafile=identity.cert_path)
    with serving(identity) as port:
        der, data = connect(port, client_ssl_context(policy), hostname)
    assert data == b"ok"
    assert verify_peer(policy, ADDRESS, der) == identity.fingerprint


def test_cert_passes_openssl_strict_mode(tmp_path: Path) -> None:
    """The certificate also verifies under VERIFY_X509_STRICT (Python 3.13's default)."""
    identity = ensure_identity(tmp_path / "s", "alice")
    context = client_ssl_context(TrustPolicy(cafile=identity.cert_path))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with serving(identity) as port:
        assert connect(port, context, "localhost")[1] == b"ok"


def test_other_nodes_cert_is_refused(tmp_path: Path) -> None:
    """Verifying against another node's cert.pem fails the handshake."""
    alice = ensure_identity(tmp_path / "alice", "alice")
    bob = ensure_identity(tmp_path / "bob", "bob")
    context = client_ssl_context(TrustPolicy(cafile=bob.cert_path))
    with serving(alice) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(port, context, "127.0.0.1")


def test_missing_cafile_is_trust_error(tmp_path: Path) -> None:
    """A CA file that is missing or holds no certificate raises TrustError naming it."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(TrustError, match="nope.pem"):
        client_ssl_context(TrustPolicy(cafile=missing))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TrustError, match="junk.pem"):
        client_ssl_context(TrustPolicy(cafile=junk))


def test_pinned_fingerprint_over_handshake(tmp_path: Path) -> None:
    """A pinning context completes a handshake with a self-signed cert; the right pin passes."""
    identity = ensure_identity(tmp_path / "s", "alice")
    policy = TrustPolicy(fingerprint=identity.fingerprint.upper().replace("SHA256:", ""))
    with serving(identity) as port:
        der, data = connect(port, client_ssl_context(policy), "anything")
    assert data == b"ok"
    assert verify_peer(policy, ADDRESS, der) == identity.fingerprint


def test_wrong_pin_is_mismatch(tmp_path: Path) -> None:
    """A presented certificate other than the pinned one raises CertificateMismatch naming both."""
    identity = ensure_identity(tmp_path / "s", "alice")
    with pytest.raises(CertificateMismatch) as info:
        verify_peer(TrustPolicy(fingerprint=OTHER_FP), ADDRESS, identity.cert_der)
    assert ADDRESS in str(info.value) and OTHER_FP in str(info.value)
    assert identity.fingerprint in str(info.value)


def test_no_peer_certificate_is_trust_error() -> None:
    """A peer that presented no certificate is refused in every mode."""
    with pytest.raises(TrustError, match="no certificate"):
        verify_peer(TrustPolicy(fingerprint=OTHER_FP), ADDRESS, None)


def test_tofu_records_then_enforces(tmp_path: Path) -> None:
    """TOFU: first use records and warns, a match is silent, a change raises, record kept."""
    identity = ensure_identity(tmp_path / "s", "alice")
    known = tmp_path / "home" / "known_nodes.json"
    policy = TrustPolicy(known_nodes=known)
    assert policy.mode is TrustMode.TOFU
    with pytest.warns(TrustOnFirstUseWarning, match="known_nodes.json"):
        assert verify_peer(policy, ADDRESS, identity.cert_der) == identity.fingerprint
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    recorded = known.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify_peer(policy, ADDRESS, identity.cert_der) == identity.fingerprint
    other = ensure_identity(tmp_path / "other", "mallory")
    with pytest.raises(CertificateMismatch, match="remove the '127.0.0.1:8765' entry"):
        verify_peer(policy, ADDRESS, other.cert_der)
    assert known.read_bytes() == recorded
    entry = json.loads(recorded)["nodes"][ADDRESS]
    assert entry["fingerprint"] == identity.fingerprint


def test_tofu_default_path_and_forget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path TOFU uses ~/.tessera/known_nodes.json; forget() drops an entry."""
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.warns(TrustOnFirstUseWarning):
        verify_peer(TrustPolicy(), ADDRESS, b"certificate")
    known = KnownNodes(tmp_path / ".tessera" / "known_nodes.json")
    assert known.forget(ADDRESS) is True
    assert known.forget(ADDRESS) is False
    with pytest.warns(TrustOnFirstUseWarning):
        assert known.check(ADDRESS, fingerprint_of(b"other")) is True


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"version": 2, "nodes": {}}',
        '{"version": 1, "nodes": {"a:1": {"fingerprint": "x"}}}',
    ],
)
def test_corrupt_known_nodes_is_trust_error(tmp_path: Path, content: str) -> None:
    """A known-nodes file we cannot parse raises TrustError naming it and is left untouched."""
    known = tmp_path / "known_nodes.json"
    known.write_text(content)
    with pytest.raises(TrustError, match="known_nodes.json"):
        KnownNodes(known).check(ADDRESS, OTHER_FP)
    assert known.read_text() == content


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    """A state dir path that is a regular file raises StateDirError saying so."""
    path = tmp_path / "state"
    path.write_text("")
    with pytest.raises(StateDirError, match="is not a directory"):
        ensure_identity(path, "alice")


def test_corrupt_key_is_state_dir_error(tmp_path: Path) -> None:
    """A corrupt key.pem raises StateDirError naming it instead of replacing the identity."""
    identity = ensure_identity(tmp_path / "s", "alice")
    identity.key_path.write_text(BAD_KEY)
    with pytest.raises(StateDirError, match="key.pem"):
        ensure_identity(tmp_path / "s", "alice")


def test_mismatched_key_and_cert(tmp_path: Path) -> None:
    """A key.pem that does not belong to cert.pem raises StateDirError."""
    ensure_identity(tmp_path / "a", "alice")
    bob = ensure_identity(tmp_path / "b", "bob")
    (tmp_path / "a" / "key.pem").write_bytes(bob.key_path.read_bytes())
    with pytest.raises(StateDirError, match="does not match"):
        ensure_identity(tmp_path / "a", "alice")


def test_half_written_identity(tmp_path: Path) -> None:
    """A lone key.pem gets a new certificate; a lone cert.pem is refused, not replaced."""
    first = ensure_identity(tmp_path / "s", "alice")
    first.cert_path.unlink()
    second = ensure_identity(tmp_path / "s", "alice")
    old_key = x509.load_der_x509_certificate(first.cert_der).public_key()
    assert x509.load_der_x509_certificate(second.cert_der).public_key() == old_key
    second.key_path.unlink()
    with pytest.raises(StateDirError, match="key.pem is missing"):
        ensure_identity(tmp_path / "s", "alice")


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "ab" * 32,
        "AB" * 32,
        ":".join(["AB"] * 32),
        "SHA256:" + ":".join(["ab"] * 32),
        "  " + "ab" * 32 + "\n",
    ],
)
def test_normalize_fingerprint_accepts(text: str) -> None:
    """Fingerprints with or without prefix, with colons, in either case, normalise alike."""
    assert normalize_fingerprint(text) == OTHER_FP


@pytest.mark.parametrize(
    "text",
    ["", "sha256:", "ab" * 31, "ab" * 33, "zz" * 32, "md5:" + "ab" * 32, "sha1:" + "ab" * 20],
)
def test_normalize_fingerprint_rejects(text: str) -> None:
    """Anything but 64 hex digits (optionally prefixed/colon-separated) raises ValueError."""
    with pytest.raises(ValueError, match="64 hex digits"):
        normalize_fingerprint(text)


def test_trust_policy_validation(tmp_path: Path) -> None:
    """TrustPolicy rejects a CA file together with a pin, and normalises the pin."""
    with pytest.raises(ValueError, match="not both"):
        TrustPolicy(cafile=tmp_path / "ca.pem", fingerprint=OTHER_FP)
    policy = TrustPolicy(fingerprint=OTHER_FP.upper())
    assert policy.fingerprint == OTHER_FP and policy.mode is TrustMode.PINNED
    assert TrustPolicy(cafile=tmp_path / "ca.pem").mode is TrustMode.CA_FILE
