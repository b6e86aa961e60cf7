"""Tessera nodes and the client API.

Two sides live here, kept apart by path: ``node/server/`` runs inside a node
(session, store, executor, op table), ``node/client/`` runs in the user's
process (``RemoteNode``, pointers, ``VirtualNode``); ``peer/transport/``
(WebSockets and TLS) serves both.

    >>> import torch, node
    >>> alice = node.connect("wss://127.0.0.1:8765", cafile="~/.tessera/nodes/alice/cert.pem")
    >>> x = alice.send(torch.tensor([1, 2]))
    >>> (x + x).get()
    tensor([2, 4])
"""

from __future__ import annotations

from protocol.errors import (
    AlreadyExists,
    BadRequest,
    BadTensor,
    InternalError,
    MalformedMessage,
    MessageTooLarge,
    NotFound,
    OpFailed,
    PeerUnavailable,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    TesseraError,
    Unauthenticated,
    UnknownKind,
    UnsupportedOp,
    VersionMismatch,
)
from protocol.messages import ObjectInfo

from . import fl
from .client.aio import AsyncRemoteNode, connect_async
from node.client.fl.jobs import DatasetPointer, RemoteJob
from .client.grid import Gateway, GridMatch, GridNode
from .client.hook import hook_torch
from .client.pointer import Pointer
from .client.remote import RemoteNode, connect
from node.client.mpc.group import (
    CryptoProviderUnavailable,
    MixedParties,
    PrecisionMismatch,
    ShapeMismatch,
    SharingError,
)
from node.client.mpc.shared import SharedTensor
from node.client.mpc.sharing import share
from .client.virtual import VirtualNode
from .errors import ClientClosed, InsecureConnectionWarning, MixedNodesError, NodeUnavailable
from peer.security.trust import CertificateMismatch, TrustError, TrustOnFirstUseWarning

__all__ = [
    "connect",
    "connect_async",
    "RemoteNode",
    "Gateway",
    "GridNode",
    "GridMatch",
    "DatasetPointer",
    "RemoteJob",
    "fl",
    "AsyncRemoteNode",
    "VirtualNode",
    "Pointer",
    "ObjectInfo",
    "hook_torch",
    "share",
    "SharedTensor",
    "SharingError",
    "MixedParties",
    "PrecisionMismatch",
    "ShapeMismatch",
    "CryptoProviderUnavailable",
    "TesseraError",
    "ProtocolError",
    "MalformedMessage",
    "UnknownKind",
    "BadTensor",
    "MessageTooLarge",
    "VersionMismatch",
    "Unauthenticated",
    "BadRequest",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "UnsupportedOp",
    "OpFailed",
    "PeerUnavailable",
    "QuotaExceeded",
    "InternalError",
    "NodeUnavailable",
    "MixedNodesError",
    "ClientClosed",
    "CertificateMismatch",
    "TrustError",
    "TrustOnFirstUseWarning",
    "InsecureConnectionWarning",
]
