"""What the round loop reaches the network through: collaborators injected by the caller.

Owns the ``Protocol``\\ s (STYLE: injected, typed) that ``node.client`` and
``node.server`` implement over their own connections, so that one loop
(:mod:`node.fl.rounds`) drives a client's ``FedAvg.fit()`` and a trainer
node's jobs alike:

- :class:`DatasetRef`: where a dataset is and what it looks like;
- :class:`OwnerDataset`: a dataset a job may train on (a client's dataset
  pointer): its reference, how to reach its owner, how to show progress;
- :class:`Participant`: one owner's dataset in a job: ``train(task)`` sends
  the round's work and returns a ``concurrent.futures.Future`` at once;
- :class:`PartyLink`: a node serving the ``secagg_*`` kinds (the crypto
  provider, an owner's node), and :class:`SecureParticipant`, a
  participant whose owner node is also an aggregation party;
- :func:`as_party`: a user's ``crypto_provider`` argument as a party;
- :func:`close_quietly`: how a job's connections are closed when it ends.

Futures carry the peer's typed errors; nothing here waits or decides.
Must not import asyncio, websockets, ``peer``, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Any, Callable, MutableMapping, Protocol, Tuple, cast

from protocol.ids import NodeId, RequestId
from protocol.messages import Reply, Request
from protocol.secagg import AggregationParty

from .job_errors import JobError
from .progress import RoundObserver
from .results import LocalResult
from .wire import TrainTask

__all__ = ["DatasetRef", "Participant", "SecureParticipant", "OwnerDataset", "PartyLink", "as_party", "close_quietly"]

log = logging.getLogger("tessera.fl")


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """Where a dataset is and what it looks like (from the gateway's record)."""

    node_id: str
    url: str
    fingerprint: str
    name: str
    feature_shape: Tuple[int, ...]
    samples: int

    @property
    def label(self) -> str:
        return f"{self.node_id}/{self.name}"

    @property
    def party(self) -> AggregationParty:
        """The dataset's node as a secure-aggregation party."""
        return AggregationParty(NodeId(self.node_id), self.url, self.fingerprint)


class Participant(Protocol):
    """One owner's dataset as the round loop reaches it."""

    def train(self, task: TrainTask) -> concurrent.futures.Future[LocalResult]:
        """Send the task now; the future resolves with the owner's result or its error."""
        ...


class PartyLink(Protocol):
    """A node serving the ``secagg_*`` kinds, as the trainer reaches it."""

    @property
    def address(self) -> AggregationParty: ...

    def call(self, build: Callable[[RequestId], Request]) -> concurrent.futures.Future[Reply]:
        """Send ``build(request_id)``; the future raises the typed error of an error reply."""
        ...


class SecureParticipant(Participant, Protocol):
    """A participant whose owner node also serves as an aggregation party."""

    def party(self) -> PartyLink: ...


class OwnerDataset(Protocol):
    """A dataset a job may train on: its reference, how to reach its owner, how to show a job.

    ``links`` is the job's cache of open connections, shared by the job's
    datasets so that several datasets on one node share one connection;
    the job closes every value that has a ``close()`` when it ends.
    """

    @property
    def ref(self) -> DatasetRef: ...

    def participant(self, links: MutableMapping[str, Any]) -> Participant: ...

    def progress(self, rounds: int) -> RoundObserver:
        """How the process this dataset was found from shows a job of ``rounds`` rounds."""
        ...


def as_party(crypto_provider: object) -> PartyLink:
    """The crypto provider as a party: a :class:`PartyLink`, or a node handle offering ``secagg_party()``."""
    if crypto_provider is None:
        raise JobError.for_reason("secure_aggregation=True needs a crypto_provider node (an aggregation party)")
    make = getattr(crypto_provider, "secagg_party", None)
    link = make() if callable(make) else crypto_provider
    if not callable(getattr(link, "call", None)) or not isinstance(getattr(link, "address", None), AggregationParty):
        raise JobError.for_reason(
            f"crypto_provider must be a node handle (node.connect / grid.connect), got {type(crypto_provider).__name__}"
        )
    return cast(PartyLink, link)


def close_quietly(link: object) -> None:
    """Close ``link`` if it has a ``close()``; a failure is logged, never raised.

    Closing a dead owner's connection must not hide a job's outcome (the
    job's ``links`` at its end; a connection that opened after its job ended).
    """
    close = getattr(link, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        log.debug("closing %r failed", link, exc_info=True)
