"""Node proofs: signed, bound to the server's fingerprint, fresh, single use."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import Unauthenticated
from node.transport.identity import ensure_identity
from node.transport.proof import MAX_CLOCK_SKEW, ProofVerifier, node_credentials

SERVER = "sha256:" + "5" * 64
OTHER_SERVER = "sha256:" + "6" * 64


def test_valid_proof_names_the_node_and_its_certificate(tmp_path: Path) -> None:
    """A fresh proof verifies to the node id and its certificate's fingerprint."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    proof = ProofVerifier(SERVER).verify(node_credentials(identity, "alice", SERVER))
    assert proof.node_id == "alice" and proof.fingerprint == identity.fingerprint


def test_replayed_proof_is_refused(tmp_path: Path) -> None:
    """The same credentials presented twice to one server fail the second time."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    verifier = ProofVerifier(SERVER)
    credentials = node_credentials(identity, "alice", SERVER)
    verifier.verify(credentials)
    with pytest.raises(Unauthenticated, match="replay"):
        verifier.verify(credentials)


def test_proof_for_another_server_is_refused(tmp_path: Path) -> None:
    """A proof made for one server cannot be relayed to another."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    with pytest.raises(Unauthenticated, match="signature"):
        ProofVerifier(OTHER_SERVER).verify(node_credentials(identity, "alice", SERVER))


def test_claiming_another_id_with_ones_own_proof_fails(tmp_path: Path) -> None:
    """Changing the node id after signing breaks the signature."""
    identity = ensure_identity(tmp_path / "mallory", "mallory")
    credentials = dict(node_credentials(identity, "mallory", SERVER), node_id="alice")
    with pytest.raises(Unauthenticated, match="signature"):
        ProofVerifier(SERVER).verify(credentials)


def test_someone_elses_certificate_without_its_key_fails(tmp_path: Path) -> None:
    """Presenting alice's certificate with a signature from another key fails."""
    alice = ensure_identity(tmp_path / "alice", "alice")
    mallory = ensure_identity(tmp_path / "mallory", "mallory")
    credentials = dict(node_credentials(mallory, "alice", SERVER), certificate=alice.cert_der)
    with pytest.raises(Unauthenticated, match="signature"):
        ProofVerifier(SERVER).verify(credentials)


def test_stale_proof_is_refused(tmp_path: Path) -> None:
    """A proof timestamped beyond the allowed clock skew is refused."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER, now=1_000_000.0)
    verifier = ProofVerifier(SERVER, clock=lambda: 1_000_000.0 + MAX_CLOCK_SKEW + 5)
    with pytest.raises(Unauthenticated, match="clocks"):
        verifier.verify(credentials)


@pytest.mark.parametrize("field", ["node_id", "certificate", "timestamp", "nonce", "signature"])
def test_missing_fields_are_refused(tmp_path: Path, field: str) -> None:
    """Credentials lacking any field are Unauthenticated, not a crash."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER)
    del credentials[field]
    with pytest.raises(Unauthenticated):
        ProofVerifier(SERVER).verify(credentials)


def test_garbage_certificate_is_refused(tmp_path: Path) -> None:
    """A certificate field that is not DER is Unauthenticated."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = dict(node_credentials(identity, "alice", SERVER), certificate=b"\x30\x03junk")
    with pytest.raises(Unauthenticated):
        ProofVerifier(SERVER).verify(credentials)


def test_certificate_with_an_unusable_key_is_unauthenticated(tmp_path: Path) -> None:
    """A DER certificate that parses but holds an invalid key (found by fuzzing) is refused cleanly."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    bad = (Path(__file__).parent / "data" / "cert_with_invalid_key.der").read_bytes()
    credentials = dict(node_credentials(identity, "alice", SERVER), certificate=bad)
    with pytest.raises(Unauthenticated, match="no usable public key"):
        ProofVerifier(SERVER).verify(credentials)
