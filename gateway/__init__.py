"""The gateway: a registry where nodes register and clients discover them.

- :mod:`.registry`: pure registry rules (who may register what, offline, drop).
- :mod:`.bindings`: the durable binding of each node id to its certificate
  (``bindings.json`` in the state directory).
- :mod:`.flood`: pure rate limits against registration floods.
- :mod:`.session`: one connection's sans-I/O conversation (frames in, outcomes out).
- :mod:`.status`: pure rendering of the status page and ``/nodes.json``.
- :mod:`.server`: the asyncio server tying them to the node's transport.
- :mod:`.settings`, :mod:`.__main__`: configuration and ``python -m gateway``.

Depends on ``protocol/`` and the shared peer layer (``peer/``: transport,
TLS identity, node proofs, the conversation state machine and its
``Outcome``) only: never on ``node/``, and a gateway process never loads
torch (``tests/test_layering.py``, ``tests/gateway/test_gateway_footprint.py``).
"""

from __future__ import annotations

from .registry import Registry, RegistryPolicy, SweepResult
from .server import GatewayServer
from .session import GatewaySession
from .settings import DEFAULT_GATEWAY_PORT, GatewaySettings

__all__ = [
    "DEFAULT_GATEWAY_PORT",
    "GatewayServer",
    "GatewaySession",
    "GatewaySettings",
    "Registry",
    "RegistryPolicy",
    "SweepResult",
]
