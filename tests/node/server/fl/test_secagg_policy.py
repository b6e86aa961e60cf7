"""A party holding its own node's share sums the round only over as many owners as that dataset's policy asks."""

from __future__ import annotations

import pytest
import torch

from node.fl.policy import PolicyRefused
from node.fl.secure import SharePart
from node.server.fl.secagg_mailbox import PendingUpdates, ShareMailbox
from node.server.store import Hold, MemoryStore
from protocol.errors import ErrorCode, NotFound
from protocol.ids import NodeId, RequestId
from protocol.secagg import SecaggShareRequest, ShareSender

ROUND = bytes(16)
SELF = (NodeId("alice"), "sha256:" + "aa" * 32)
OTHERS = [(NodeId(f"n{i}"), "sha256:" + f"{i:02x}" * 32) for i in range(1, 4)]


def _share(owner: int) -> tuple[SecaggShareRequest, SharePart]:
    return SecaggShareRequest(RequestId(1), ROUND, owner, {"w": (2,)}, bytes(16)), SharePart(None, {})


def _mailbox(owners: int) -> ShareMailbox:
    mailbox = ShareMailbox()
    senders = [SELF, *OTHERS][:owners]
    mailbox.setup("user:t", ROUND, [ShareSender(i, n, f) for i, (n, f) in enumerate(senders)], 60.0)
    return mailbox


def test_a_round_with_an_own_share_of_a_k3_dataset_is_not_summed_over_two() -> None:
    """Own share posted with min_owners 3: check and sum over 2 owners are PERMISSION_DENIED, over 3 fine."""
    mailbox = _mailbox(3)
    mailbox.post(SELF, *_share(0), min_owners=3)
    mailbox.post(OTHERS[0], *_share(1))
    for check in (mailbox.missing, mailbox.take):
        with pytest.raises(PolicyRefused) as caught:
            check("user:t", ROUND, (0, 1))
        assert caught.value.code is ErrorCode.PERMISSION_DENIED
        assert caught.value.details == {"rule": "secure_aggregation_min_owners", "limit": 3}
    assert mailbox.missing("user:t", ROUND, (0, 1, 2)) == (2,)  # refused nothing: the round stays open
    mailbox.post(OTHERS[1], *_share(2))
    assert len(mailbox.take("user:t", ROUND, (0, 1, 2))) == 3


def test_a_peer_cannot_lower_or_raise_the_rule() -> None:
    """Only this node's own posts carry a rule: shares from other nodes leave the round at 2 owners."""
    mailbox = _mailbox(2)
    mailbox.post(OTHERS[0], *_share(1))
    mailbox.post(SELF, *_share(0))
    assert len(mailbox.take("user:t", ROUND, (0, 1))) == 2


def test_a_parked_update_comes_back_with_its_rule() -> None:
    """take hands over the update and the dataset's K together; another principal gets neither."""
    pending = PendingUpdates()
    held = MemoryStore().reserve("user:t", Hold.SECURE_UPDATE, 16)
    update = {"w": torch.zeros(2, dtype=torch.int64)}
    pending.put("user:t", ROUND, 0, update, held, min_owners=4)
    with pytest.raises(NotFound):
        pending.take("user:eve", ROUND, 0)
    assert pending.take("user:t", ROUND, 0) == (update, 4)
    with pytest.raises(NotFound):
        pending.take("user:t", ROUND, 0)