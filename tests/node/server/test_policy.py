"""Policy: restrictions per guardian, readers as their intersection, release, combine."""

from __future__ import annotations

import pytest

from node.server.policy import MOVER, Policy, combine
from protocol.errors import PermissionDenied, QuotaExceeded
from protocol.transfers import MAX_POLICY_PRINCIPALS

HOSPITAL = "user:hospital"
BANK = "user:bank"
ANALYST = "user:analyst"


def test_own_policy_lets_only_the_owner_read() -> None:
    """Policy.own(owner): one restriction, the owner its only reader, not shared."""
    policy = Policy.own(HOSPITAL)
    assert policy.restrictions == ((HOSPITAL, frozenset({HOSPITAL})),)
    assert policy.can_read(HOSPITAL) and not policy.can_read(ANALYST)
    assert policy.readers() == {HOSPITAL} and policy.guardians == {HOSPITAL}
    assert not policy.shared


def test_private_policy_is_shared_but_readable_only_by_its_owner() -> None:
    """Policy.private(owner) is shared (visible to all) yet readable by the owner alone."""
    policy = Policy.private(HOSPITAL)
    assert policy.shared and policy.readers() == {HOSPITAL}
    assert not policy.can_read(ANALYST)


def test_combine_keeps_every_guardian_and_intersects_readers() -> None:
    """A result of two principals' data is readable by nobody until both release to the same reader."""
    result = combine([Policy.private(HOSPITAL), Policy.own(ANALYST)])
    assert result.guardians == {HOSPITAL, ANALYST}
    assert result.readers() == frozenset()
    assert not result.shared, "results belong to whoever computed them"


def test_combine_of_one_guardian_intersects_its_reader_sets() -> None:
    """The same guardian twice keeps only the readers both of its restrictions allow."""
    wide = Policy.own(HOSPITAL).release(HOSPITAL, ANALYST).release(HOSPITAL, BANK)
    narrow = Policy.own(HOSPITAL).release(HOSPITAL, ANALYST)
    result = combine([wide, narrow])
    assert result.restrictions == ((HOSPITAL, frozenset({HOSPITAL, ANALYST})),)


def test_combine_of_identical_policies_is_the_same_restriction_unshared() -> None:
    """The fast path for one principal's data gives the same restriction, never shared."""
    result = combine([Policy.private(HOSPITAL), Policy.private(HOSPITAL)])
    assert result == Policy.own(HOSPITAL)


def test_release_adds_a_reader_to_the_releasers_restriction_only() -> None:
    """A guardian's release allows the principal only as far as that guardian's restriction goes."""
    result = combine([Policy.private(HOSPITAL), Policy.own(ANALYST)])
    half = result.release(HOSPITAL, ANALYST)
    assert half.can_read(ANALYST), "the analyst's own restriction already allows it"
    other = result.release(HOSPITAL, BANK)
    assert not other.can_read(BANK), "the analyst has not released to the bank"
    assert other.release(ANALYST, BANK).can_read(BANK)


def test_release_by_a_non_guardian_is_permission_denied() -> None:
    """Only a principal whose data is in the object may release it."""
    with pytest.raises(PermissionDenied):
        Policy.private(HOSPITAL).release(ANALYST, ANALYST)


def test_release_beyond_the_policy_size_limit_is_refused() -> None:
    """A policy naming MAX_POLICY_PRINCIPALS principals takes no further release."""
    policy = Policy.of([(HOSPITAL, frozenset(f"user:{n}" for n in range(MAX_POLICY_PRINCIPALS - 1)))])
    assert policy.size() == MAX_POLICY_PRINCIPALS
    with pytest.raises(QuotaExceeded):
        policy.release(HOSPITAL, ANALYST)


def test_renamed_substitutes_guardians_and_readers() -> None:
    """renamed replaces a principal everywhere (the mover placeholder of transfers)."""
    policy = combine([Policy.private(HOSPITAL).release(HOSPITAL, ANALYST), Policy.own(ANALYST)])
    moved = policy.renamed({ANALYST: MOVER}).renamed({MOVER: "user:analyst-on-bob"})
    assert moved.guardians == {HOSPITAL, "user:analyst-on-bob"}
    assert moved.can_read("user:analyst-on-bob") and not moved.can_read(ANALYST)


def test_empty_policy_is_readable_by_nobody() -> None:
    """No restriction at all never means everyone may read."""
    assert not Policy(()).can_read(ANALYST) and Policy(()).readers() == frozenset()
