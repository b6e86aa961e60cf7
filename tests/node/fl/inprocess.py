"""Owners and aggregation parties in this process, for the round loop's tests.

Real local training (:func:`node.fl.train_locally`) and real secure
aggregation arithmetic (:mod:`node.fl.secure`) behind the collaborators the
loop is given (:mod:`node.fl.links`); only the wire is left out.  Answers
come back as already-settled futures, or never (``silent``), or as the
error an owner or party is told to fail with.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, MutableMapping, Optional

import torch

from node.fl.datasets import Dataset
from node.fl.links import DatasetRef
from node.fl.local import train_locally
from node.fl.results import LocalResult
from node.fl.secure import add_shares, encode_update, shapes_of, share_tensors, split_update
from node.fl.wire import TrainTask
from protocol.federated import RoundRecord
from protocol.ids import NodeId, RequestId
from protocol.messages import Reply, Request
from protocol.secagg import AggregationParty, SecaggSetupRequest, SecaggSplitRequest, SecaggSumRequest

FINGERPRINT = "sha256:" + "ab" * 32


def _settled(value: Any = None, error: Optional[BaseException] = None) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


class Network:
    """Every in-process node by name: parties reach each other's share boxes through it."""

    def __init__(self) -> None:
        self.nodes: Dict[str, Node] = {}
        self.calls: List[Request] = []

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            self.nodes[name] = Node(self, name)
        return self.nodes[name]


class Node:
    """A node as an aggregation party (a :class:`~node.fl.links.PartyLink`), with what its owners left for it."""

    def __init__(self, network: Network, name: str) -> None:
        self.network = network
        self.address = AggregationParty(NodeId(name), f"wss://{name}", FINGERPRINT)
        self.updates: Dict[int, Dict[str, torch.Tensor]] = {}
        """Encoded updates of secure trainings, by owner index, until their split."""
        self.shares: Dict[int, Dict[str, torch.Tensor]] = {}
        self.fail: Dict[type, BaseException] = {}
        """Request kind -> the error this party answers it with."""
        self.lose_shares = False
        """Answer the final sum as if its shares were gone."""
        self.never_receives: set[int] = set()
        """Owner indices whose share never reaches this party."""

    def call(self, build: Callable[[RequestId], Request]) -> concurrent.futures.Future[Reply]:
        request = build(RequestId(len(self.network.calls) + 1))
        self.network.calls.append(request)
        failure = self.fail.get(type(request))
        if failure is not None:
            return _settled(error=failure)
        return _settled(self._answer(request))

    def _answer(self, request: Request) -> Reply:
        if isinstance(request, SecaggSetupRequest):
            return request.ack()
        if isinstance(request, SecaggSplitRequest):
            update = self.updates.pop(request.owner)
            mine = [p.node for p in request.parties].index(self.address.node)
            parts = split_update(update, len(request.parties), mine)
            for party, part in zip(request.parties, parts):
                receiver = self.network.node(party.node)
                if request.owner not in receiver.never_receives:
                    receiver.shares[request.owner] = share_tensors(shapes_of(update), part)
            return request.ack()
        assert isinstance(request, SecaggSumRequest)
        held = {} if self.lose_shares and not request.check else self.shares
        missing = tuple(i for i in request.owners if i not in held)
        if request.check or missing:
            return request.reply(missing, {})
        return request.reply((), add_shares([held[i] for i in request.owners]))


@dataclass(eq=False)
class Owner:
    """One dataset on an in-process node: a :class:`~node.fl.links.SecureParticipant`."""

    node: Node
    dataset: Dataset
    fail: Optional[BaseException] = None
    """The error every ``train`` fails with (``None``: it trains)."""
    silent: bool = False
    """Never answer (the round's deadline drops it)."""
    raise_on_send: Optional[BaseException] = None
    tasks: List[TrainTask] = field(default_factory=list)

    @property
    def ref(self) -> DatasetRef:
        info = self.dataset.info
        return DatasetRef(self.node.address.node, self.node.address.url, FINGERPRINT, info.name,
                          tuple(info.feature_shape), self.dataset.train_samples)

    def train(self, task: TrainTask) -> concurrent.futures.Future[LocalResult]:
        if self.raise_on_send is not None:
            raise self.raise_on_send
        self.tasks.append(task)
        if self.silent:
            return concurrent.futures.Future()
        if self.fail is not None:
            return _settled(error=self.fail)
        result = train_locally(task.spec, task.state, self.dataset, task.hyper)
        if task.secure is None:
            return _settled(result)
        self.node.updates[task.owner_index] = encode_update(result.state, result.samples, task.secure.precision)
        return _settled(LocalResult({}, result.samples, result.train_loss, result.heldout, result.privacy))

    def party(self) -> Node:
        return self.node


class Observer:
    """A :class:`~node.fl.progress.RoundObserver` that remembers what it was shown."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.shown: List[Mapping[str, str]] = []
        self.closed = False

    def round_done(self, record: RoundRecord, summary: Mapping[str, str]) -> None:
        self.shown.append(dict(summary))

    def close(self) -> None:
        self.closed = True


@dataclass(eq=False)
class OwnerData:
    """An :class:`~node.fl.links.OwnerDataset` for ``FedAvg``: the owner, and the observers it handed out."""

    owner: Owner
    observers: List[Observer] = field(default_factory=list)

    @property
    def ref(self) -> DatasetRef:
        return self.owner.ref

    def participant(self, links: MutableMapping[str, Any]) -> Owner:
        return self.owner

    def progress(self, rounds: int) -> Observer:
        self.observers.append(Observer(rounds))
        return self.observers[-1]
