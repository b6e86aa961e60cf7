"""Tessera nodes and the client API.

Two sides live here, kept apart by path: ``node/server/`` runs inside a node
(session, store, executor, op table), ``node/client/`` runs in the user's
process (``RemoteNode``, pointers, ``VirtualNode``); ``peer/`` (transport,
security, channels) serves both.

    >>> import torch, node
    >>> alice = node.connect("wss://127.0.0.1:8765", cafile="~/.tessera/nodes/alice/cert.pem")
    >>> x = alice.send(torch.tensor([1, 2]))
    >>> (x + x).get()
    tensor([2, 4])

Every public name is imported on first use (PEP 562), from the table
:data:`_EXPORTS`: ``python -m node`` (a node process) and tools that need
one submodule never load the client API, and ``import node`` costs nothing
until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol.errors import (
        AlreadyExists,
        BadRequest,
        BadTensor,
        InternalError,
        LocalProtocolError,
        MalformedMessage,
        MessageTooLarge,
        NotFound,
        OpFailed,
        PeerUnavailable,
        PermissionDenied,
        ProtocolError,
        QuotaExceeded,
        RemoteProtocolError,
        TesseraError,
        Unauthenticated,
        UnknownKind,
        UnsupportedOp,
        VersionMismatch,
    )
    from protocol.messages import ObjectInfo

    from peer.security.trust import CertificateMismatch, TrustError, TrustOnFirstUseWarning

    from . import fl
    from .client.aio import AsyncRemoteNode, connect_async
    from .client.fl.jobs import DatasetPointer, RemoteJob
    from .client.grid import Gateway, GridMatch, GridNode
    from .client import optim
    from .client.hook import hook_torch
    from .client.models import get_model, model_location, move_model, pointer_of, send_model
    from .client.mpc.group import (
        CryptoProviderRequired,
        CryptoProviderUnavailable,
        MixedNetworks,
        MixedParties,
        PrecisionMismatch,
        ShapeMismatch,
        SharingError,
    )
    from .client.mpc.preprocess import preprocess
    from .client.mpc.shared import SharedTensor
    from .client.mpc.sharing import share
    from .client.pointer import Pointer
    from .client.remote import RemoteNode, connect
    from .client.virtual import VirtualNode
    from .errors import ClientClosed, InsecureConnectionWarning, MixedNodesError, NodeUnavailable

_ERRORS = "protocol.errors"
_MPC = "node.client.mpc.group"

_EXPORTS: dict[str, tuple[str, str | None]] = {
    "connect": ("node.client.remote", "connect"),
    "connect_async": ("node.client.aio", "connect_async"),
    "RemoteNode": ("node.client.remote", "RemoteNode"),
    "Gateway": ("node.client.grid", "Gateway"),
    "GridNode": ("node.client.grid", "GridNode"),
    "GridMatch": ("node.client.grid", "GridMatch"),
    "DatasetPointer": ("node.client.fl.jobs", "DatasetPointer"),
    "RemoteJob": ("node.client.fl.jobs", "RemoteJob"),
    "fl": ("node.fl", None),
    "AsyncRemoteNode": ("node.client.aio", "AsyncRemoteNode"),
    "VirtualNode": ("node.client.virtual", "VirtualNode"),
    "Pointer": ("node.client.pointer", "Pointer"),
    "ObjectInfo": ("protocol.messages", "ObjectInfo"),
    "hook_torch": ("node.client.hook", "hook_torch"),
    "optim": ("node.client.optim", None),
    "send_model": ("node.client.models", "send_model"),
    "get_model": ("node.client.models", "get_model"),
    "move_model": ("node.client.models", "move_model"),
    "model_location": ("node.client.models", "model_location"),
    "pointer_of": ("node.client.models", "pointer_of"),
    "share": ("node.client.mpc.sharing", "share"),
    "preprocess": ("node.client.mpc.preprocess", "preprocess"),
    "SharedTensor": ("node.client.mpc.shared", "SharedTensor"),
    "encrypt": ("node.client.mpc.nn", "encrypt"),
    "SharingError": (_MPC, "SharingError"),
    "MixedParties": (_MPC, "MixedParties"),
    "PrecisionMismatch": (_MPC, "PrecisionMismatch"),
    "ShapeMismatch": (_MPC, "ShapeMismatch"),
    "CryptoProviderUnavailable": (_MPC, "CryptoProviderUnavailable"),
    "CryptoProviderRequired": (_MPC, "CryptoProviderRequired"),
    "MixedNetworks": (_MPC, "MixedNetworks"),
    "TesseraError": (_ERRORS, "TesseraError"),
    "ProtocolError": (_ERRORS, "ProtocolError"),
    "LocalProtocolError": (_ERRORS, "LocalProtocolError"),
    "RemoteProtocolError": (_ERRORS, "RemoteProtocolError"),
    "MalformedMessage": (_ERRORS, "MalformedMessage"),
    "UnknownKind": (_ERRORS, "UnknownKind"),
    "BadTensor": (_ERRORS, "BadTensor"),
    "MessageTooLarge": (_ERRORS, "MessageTooLarge"),
    "VersionMismatch": (_ERRORS, "VersionMismatch"),
    "Unauthenticated": (_ERRORS, "Unauthenticated"),
    "BadRequest": (_ERRORS, "BadRequest"),
    "NotFound": (_ERRORS, "NotFound"),
    "AlreadyExists": (_ERRORS, "AlreadyExists"),
    "PermissionDenied": (_ERRORS, "PermissionDenied"),
    "UnsupportedOp": (_ERRORS, "UnsupportedOp"),
    "OpFailed": (_ERRORS, "OpFailed"),
    "PeerUnavailable": (_ERRORS, "PeerUnavailable"),
    "QuotaExceeded": (_ERRORS, "QuotaExceeded"),
    "InternalError": (_ERRORS, "InternalError"),
    "NodeUnavailable": ("node.errors", "NodeUnavailable"),
    "MixedNodesError": ("node.errors", "MixedNodesError"),
    "ClientClosed": ("node.errors", "ClientClosed"),
    "CertificateMismatch": ("peer.security.trust", "CertificateMismatch"),
    "TrustError": ("peer.security.trust", "TrustError"),
    "TrustOnFirstUseWarning": ("peer.security.trust", "TrustOnFirstUseWarning"),
    "InsecureConnectionWarning": ("node.errors", "InsecureConnectionWarning"),
}
"""Public name -> (module, attribute in it; None: the module itself)."""

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it as a module global."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
