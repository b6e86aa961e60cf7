"""Who may read a stored object: restrictions imposed by the principals whose data it holds.

Every object carries a :class:`Policy`.  A policy is a set of
*restrictions*, one per *guardian*: the principal whose data went into the
object, with the principals that guardian allows to read it.  The object's
readers are the intersection of every restriction's reader set, so an
object computed from two principals' data can be read only by someone both
of them allow.  A fresh object has one restriction, its owner's, allowing
only the owner; an op's result combines its inputs' restrictions with the
computing principal's own (:func:`combine`), so a result is never more
readable than any input, and its owner must release it too.  A guardian may
*release* an object to another principal by adding it to its own reader
set; a released derived object therefore still needs every guardian's
release.

``shared`` marks a data owner's private dataset: any principal may *see*
it (list, describe, use it in commands through pointers), but reading it
still follows the restrictions.  Results are never shared: they belong to
whoever computed them.

Pure: no torch, no store, no I/O.  Principals are opaque strings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Mapping

from peer.server.auth import Principal
from protocol.errors import PermissionDenied, QuotaExceeded
from protocol.transfers import MAX_POLICY_PRINCIPALS

__all__ = ["Principal", "Restriction", "Policy", "combine", "MOVER", "OPERATOR"]


Restriction = tuple[Principal, frozenset[Principal]]
"""A guardian and the principals it allows to read."""

OPERATOR = "operator"
"""The node operator's own principal: it owns the datasets a node announces at
start.  No credential maps to it (users are ``user:``, nodes ``node:``), so
nothing it guards can be released over the network."""

MOVER = "@mover"
"""Stands for the principal moving an object while its policy travels between nodes.

No authenticator produces it (principals are ``user:``, ``node:`` or
``anon-`` names), so it cannot collide with a real principal; the
destination replaces it by the principal that made the ``expect``.
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """The restrictions on an object, sorted by guardian, one entry per guardian."""

    restrictions: tuple[Restriction, ...]
    shared: bool = False

    @classmethod
    def own(cls, owner: Principal) -> Policy:
        """An ordinary object: only its owner may see and read it (one shared instance per owner)."""
        return _own(owner)

    @classmethod
    def private(cls, owner: Principal) -> Policy:
        """A data owner's private dataset: anyone may compute on it, only the owner may read it."""
        return cls(((owner, frozenset({owner})),), shared=True)

    @classmethod
    def of(cls, restrictions: Iterable[Restriction], shared: bool = False) -> Policy:
        """A policy from restrictions in any order; a repeated guardian's sets are intersected."""
        merged: dict[Principal, frozenset[Principal]] = {}
        for guardian, readers in restrictions:
            previous = merged.get(guardian)
            merged[guardian] = readers if previous is None else previous & readers
        return cls(tuple(sorted(merged.items())), shared)

    @property
    def guardians(self) -> frozenset[Principal]:
        """The principals whose data imposes a restriction (any of them may release)."""
        return frozenset(guardian for guardian, _ in self.restrictions)

    def readers(self) -> frozenset[Principal]:
        """Everyone allowed by every guardian."""
        sets = [readers for _, readers in self.restrictions]
        if not sets:
            return frozenset()
        return frozenset.intersection(*sets)

    def can_read(self, principal: Principal) -> bool:
        """Whether ``principal`` may read the data (get, read, transfer)."""
        for _, readers in self.restrictions:  # a loop: this is on every command's path
            if principal not in readers:
                return False
        return bool(self.restrictions)

    def release(self, by: Principal, to: Principal) -> Policy:
        """``by`` allows ``to`` to read, as far as ``by``'s own restriction goes.

        Only a guardian may release (PermissionDenied otherwise); the other
        guardians' restrictions still apply.
        """
        if by not in self.guardians:
            raise PermissionDenied(
                "only a principal whose data the object holds may release it", {}
            )
        if self.size() >= MAX_POLICY_PRINCIPALS:
            raise QuotaExceeded(
                f"an object may name at most {MAX_POLICY_PRINCIPALS} principals in its policy",
                {"limit": MAX_POLICY_PRINCIPALS},
            )
        return Policy(
            tuple((g, r | {to}) if g == by else (g, r) for g, r in self.restrictions),
            self.shared,
        )

    def renamed(self, names: Mapping[Principal, Principal]) -> Policy:
        """The same policy with principals replaced per ``names`` (for transfers)."""
        return Policy.of(
            ((names.get(g, g), frozenset(names.get(p, p) for p in r)) for g, r in self.restrictions),
            self.shared,
        )

    def size(self) -> int:
        """Principals named in the policy, counted once per restriction entry."""
        return sum(1 + len(readers) for _, readers in self.restrictions)


def combine(policies: Iterable[Policy]) -> Policy:
    """The policy of a value computed from objects with these policies (never shared).

    The union of their restrictions, a guardian that appears more than once
    keeping only the readers all its restrictions allow; so the result's
    readers are the intersection of the inputs' readers.
    """
    items = list(policies)
    if items:  # the common case: one principal's own data, the same cached Policy.own
        first = items[0]
        for policy in items:
            if policy is not first and policy.restrictions != first.restrictions:
                break
        else:
            return first if not first.shared else Policy(first.restrictions)
    return Policy.of((r for policy in items for r in policy.restrictions), shared=False)


@functools.lru_cache(maxsize=4096)
def _own(owner: Principal) -> Policy:
    return Policy(((owner, frozenset({owner})),))
