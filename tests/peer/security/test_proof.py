"""Node proofs: signed, bound to the server's fingerprint, fresh, single use."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import Unauthenticated
from peer.security.identity import ensure_identity
from peer.security.proof import MAX_CLOCK_SKEW, ProofVerifier, node_credentials
from peer.security.tokens import network_key

SERVER = "sha256:" + "5" * 64
OTHER_SERVER = "sha256:" + "6" * 64
NETWORK = network_key("tsn1.the-network-token-for-tests")
OTHER_NETWORK = network_key("tsn1.another-network-token-here")


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


# -- membership of a network -----------------------------------------------------


def test_member_proof_verifies_with_the_network_key(tmp_path: Path) -> None:
    """A proof made with the network key is accepted by a verifier holding the same key."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER, network=NETWORK)
    assert isinstance(credentials["membership"], bytes)
    proof = ProofVerifier(SERVER, network=NETWORK).verify(credentials)
    assert proof.node_id == "alice" and proof.fingerprint == identity.fingerprint


def test_proof_without_membership_is_refused_by_a_network(tmp_path: Path) -> None:
    """A valid signature alone is not enough when the verifier has a network key."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER)
    assert "membership" not in credentials
    with pytest.raises(Unauthenticated, match="did not prove membership") as caught:
        ProofVerifier(SERVER, network=NETWORK).verify(credentials)
    assert caught.value.details == {"node_id": "alice"}


def test_proof_for_another_network_is_refused(tmp_path: Path) -> None:
    """A membership MAC made with another network's key is refused."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER, network=OTHER_NETWORK)
    with pytest.raises(Unauthenticated, match="network token"):
        ProofVerifier(SERVER, network=NETWORK).verify(credentials)


@pytest.mark.parametrize(
    "membership", [b"", b"\x00" * 32, "not bytes", None], ids=["empty", "zeros", "str", "nil"]
)
def test_forged_membership_is_refused(tmp_path: Path, membership: object) -> None:
    """A membership field that is not the right MAC (or not bytes) is Unauthenticated."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = dict(node_credentials(identity, "alice", SERVER), membership=membership)
    with pytest.raises(Unauthenticated, match="membership"):
        ProofVerifier(SERVER, network=NETWORK).verify(credentials)


def test_membership_is_bound_to_the_signed_fields(tmp_path: Path) -> None:
    """Membership copied from one proof onto another (same node, new nonce) is refused."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    member = node_credentials(identity, "alice", SERVER, network=NETWORK)
    fresh = dict(node_credentials(identity, "alice", SERVER), membership=member["membership"])
    with pytest.raises(Unauthenticated, match="membership"):
        ProofVerifier(SERVER, network=NETWORK).verify(fresh)


def test_refused_membership_does_not_burn_the_nonce(tmp_path: Path) -> None:
    """A proof refused for membership is not remembered, so it is no replay of anything."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    verifier = ProofVerifier(SERVER, network=NETWORK)
    member = node_credentials(identity, "alice", SERVER, network=NETWORK)
    with pytest.raises(Unauthenticated, match="membership"):
        verifier.verify(dict(member, membership=b"\x01" * 32))
    assert verifier.verify(member).node_id == "alice"


@pytest.mark.parametrize("network", [None, NETWORK], ids=["without", "with"])
def test_verifier_without_a_network_key_ignores_membership(tmp_path: Path, network: bytes | None) -> None:
    """A verifier with no network key accepts proofs with or without a membership MAC."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER, network=network)
    assert ProofVerifier(SERVER).verify(credentials).node_id == "alice"


def test_membership_does_not_excuse_a_bad_signature(tmp_path: Path) -> None:
    """A valid membership MAC on a proof for another server still fails the signature."""
    identity = ensure_identity(tmp_path / "alice", "alice")
    credentials = node_credentials(identity, "alice", SERVER, network=NETWORK)
    with pytest.raises(Unauthenticated, match="signature"):
        ProofVerifier(OTHER_SERVER, network=NETWORK).verify(credentials)
