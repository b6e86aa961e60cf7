"""A node's TLS identity: its private key and self-signed certificate.

Owns the state-directory files ``key.pem`` and ``cert.pem``, their creation
on first start, their validation on every later start, and certificate
fingerprints (the value peers pin).  Pure file and ``cryptography`` work: this
module must not import ``websockets`` or ``asyncio``; callers on an event loop
run :func:`ensure_identity` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.errors import TesseraError

from peer.errors import reason_of

__all__ = [
    "load_signing_key",
    "KEY_FILE",
    "CERT_FILE",
    "CERT_VALIDITY",
    "Identity",
    "StateDirError",
    "ensure_identity",
    "fingerprint_of",
    "normalize_fingerprint",
]

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CERT_VALIDITY = datetime.timedelta(days=3653)
"""Ten years: peers pin the fingerprint, so a rotation costs every peer a re-pin."""

_BACKDATE = datetime.timedelta(days=1)  # tolerate peers whose clocks run slow
_MAX_CN = 64  # RFC 5280 upper bound for commonName
_FINGERPRINT_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WILDCARD_BINDS = frozenset({"", "*"})

_SIGNING_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


class StateDirError(TesseraError):
    """The state directory or a file in it cannot be used.

    Local only (no wire code).  Raised instead of silently regenerating, because
    a new key is a new identity and every peer that pinned the old one would
    then refuse this node.
    """

    @classmethod
    def for_path(cls, path: Path, problem: str) -> StateDirError:
        sep = " " if problem.startswith("is ") else ": "
        return cls(f"state dir {path}{sep}{problem}", {"path": str(path), "problem": problem})


@dataclass(frozen=True, slots=True)
class Identity:
    """Where a node's key and certificate live, and what peers should pin."""

    cert_path: Path
    key_path: Path
    cert_der: bytes
    fingerprint: str


def fingerprint_of(der: bytes) -> str:
    """``sha256:`` and the lowercase hex SHA-256 of a DER certificate.

    Hashing the whole certificate (not only the public key) matches what
    ``openssl x509 -fingerprint -sha256`` prints, so operators can compare.
    """
    return _FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """The canonical ``sha256:<64 hex>`` form of a user-supplied fingerprint.

    Accepts the prefix or not, colon-separated pairs (as OpenSSL prints them)
    and either case, so a value pasted from any tool compares equal.
    """
    value = text.strip().lower()
    if value.startswith(_FINGERPRINT_PREFIX):
        value = value[len(_FINGERPRINT_PREFIX) :]
    value = value.replace(":", "")
    if not _HEX64.fullmatch(value):
        shown = text if len(text) <= 100 else text[:100] + "..."
        raise ValueError(
            f"invalid certificate fingerprint {shown!r}: expected 'sha256:' followed by "
            "64 hex digits (colons and upper case allowed)"
        )
    return _FINGERPRINT_PREFIX + value


def ensure_identity(
    state_dir: Path, common_name: str, hostnames: Sequence[str] = ()
) -> Identity:
    """Load the node's identity from ``state_dir``, creating it on first start.

    ``hostnames`` (and ``localhost``, loopback and this machine's name) go into
    the certificate's subjectAltName so that CA-file verification with
    hostname checking works.  They only matter on creation: an existing
    identity is never reissued, since that would change its fingerprint.
    """
    try:
        return _ensure(state_dir, common_name, hostnames)
    except OSError as exc:  # a stat or mkdir the helpers did not translate
        raise StateDirError.for_path(state_dir, f"is unusable: {reason_of(exc)}") from exc


def _ensure(state_dir: Path, common_name: str, hostnames: Sequence[str]) -> Identity:
    _ensure_dir(state_dir)
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return _load(state_dir, key_path, cert_path)
    if cert_path.exists():
        raise StateDirError.for_path(
            state_dir,
            f"{CERT_FILE} exists but {KEY_FILE} is missing; restore the key, or remove "
            f"{cert_path} to create a new identity (peers must then re-pin it)",
        )
    key: CertificateIssuerPrivateKeyTypes
    if key_path.exists():
        key = _load_key(state_dir, key_path)  # crashed between the two writes
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        _write(state_dir, key_path, _key_pem(key), 0o600)
    cert = _self_signed(key, common_name, _subject_alt_names(hostnames))
    _write(state_dir, cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return _identity(key_path, cert_path, cert)


def _ensure_dir(state_dir: Path) -> None:
    """Create ``state_dir`` as 0700 (parents with default modes) if missing."""
    if state_dir.exists() or state_dir.is_symlink():
        if not state_dir.is_dir():
            raise StateDirError.for_path(state_dir, "is not a directory")
        return
    try:
        state_dir.mkdir(mode=0o700, parents=True)
        os.chmod(state_dir, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise StateDirError.for_path(state_dir, f"cannot create it: {reason_of(exc)}") from exc


def _load(state_dir: Path, key_path: Path, cert_path: Path) -> Identity:
    """Read and cross-check an existing key and certificate."""
    key = _load_key(state_dir, key_path)
    data = _read(state_dir, cert_path)
    try:
        cert = x509.load_pem_x509_certificates(data)[0]  # leaf first, chain may follow
    except (ValueError, IndexError) as exc:
        raise StateDirError.for_path(state_dir, f"{cert_path} is not a PEM certificate") from exc
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise StateDirError.for_path(
            state_dir, f"{key_path} does not match the certificate in {cert_path}"
        )
    if cert.not_valid_after_utc <= _now():
        raise StateDirError.for_path(
            state_dir,
            f"{cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}; remove it to "
            "issue a new one (peers must then re-pin it)",
        )
    return _identity(key_path, cert_path, cert)


def _load_key(state_dir: Path, key_path: Path) -> CertificateIssuerPrivateKeyTypes:
    data = _read(state_dir, key_path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise StateDirError.for_path(
            state_dir, f"{key_path} is not an unencrypted PEM private key"
        ) from exc
    if not isinstance(key, _SIGNING_KEYS):
        raise StateDirError.for_path(state_dir, f"{key_path} holds a key that cannot sign")
    return key


def load_signing_key(identity: Identity) -> CertificateIssuerPrivateKeyTypes:
    """The private key of ``identity``, for signing node proofs (blocking file read)."""
    return _load_key(identity.key_path.parent, identity.key_path)


def _read(state_dir: Path, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StateDirError.for_path(state_dir, f"cannot read {path}: {reason_of(exc)}") from exc


def _write(state_dir: Path, path: Path, data: bytes, mode: int) -> None:
    try:
        atomic_write(path, data, mode)
    except OSError as exc:
        raise StateDirError.for_path(state_dir, f"cannot write {path}: {reason_of(exc)}") from exc


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half.

    The temporary file is created with ``mode`` from the start (``os.open``
    with ``O_EXCL``), so a private key is never readable by others, not even
    for an instant.  Raises ``OSError``; callers translate it.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exact mode whatever the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    """Loopback, this machine's name and ``hostnames``, deduplicated.

    IP literals become IPAddress entries (hostname checking never matches an
    IP against a DNSName); wildcard binds name no host and are skipped.
    """
    names: list[x509.GeneralName] = []
    for raw in ["localhost", "127.0.0.1", "::1", *hostnames, socket.gethostname()]:
        name = _general_name(raw)
        if name is not None and name not in names:
            names.append(name)
    return names


def _general_name(raw: str) -> x509.GeneralName | None:
    text = raw.strip().strip("[]").lower()
    if text in _WILDCARD_BINDS:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if not text.isascii() or text.startswith("*"):
            return None  # IDNs need an A-label; wildcards are not ours to claim
        return x509.DNSName(text)
    return None if ip.is_unspecified else x509.IPAddress(ip)


def _self_signed(
    key: CertificateIssuerPrivateKeyTypes, common_name: str, sans: list[x509.GeneralName]
) -> x509.Certificate:
    """A certificate that is its own CA, so ``cert.pem`` doubles as a cafile.

    Key usage, extended key usage and key identifiers are set so the
    certificate also passes OpenSSL's strict mode (``VERIFY_X509_STRICT``,
    on by default in Python 3.13's ``create_default_context``).
    """
    cn = common_name[:_MAX_CN] or "tessera"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_KEY_USAGE, critical=True)
        .add_extension(_EXTENDED_KEY_USAGE, critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    eddsa = isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    return builder.sign(key, None if eddsa else hashes.SHA256())


_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)

_EXTENDED_KEY_USAGE = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _identity(key_path: Path, cert_path: Path, cert: x509.Certificate) -> Identity:
    der = cert.public_bytes(serialization.Encoding.DER)
    return Identity(
        cert_path=cert_path, key_path=key_path, cert_der=der, fingerprint=fingerprint_of(der)
    )


def _spki(public_key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
