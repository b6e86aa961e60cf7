"""Authentication for benchmark runs: the same tokens a real deployment uses.

Benchmarks measure nodes as users run them, so authentication stays on: a
fresh network token and one user token per run, the user admitted on every
node's state directory before the node starts.  The tokens go into this
process's environment, where child nodes (``TESSERA_NETWORK_TOKEN``) and
``node.connect`` (``TESSERA_TOKEN``) find them.
"""

from __future__ import annotations

import os
from pathlib import Path

from node.server.users import UserDirectory
from peer.security.tokens import new_network_token, new_user_token, parse_user_token

__all__ = ["admit_benchmark_user"]


def admit_benchmark_user(*state_dirs: Path | str) -> str:
    """Admit this run's user on each state directory; its token (also put in the environment)."""
    os.environ.setdefault("TESSERA_NETWORK_TOKEN", new_network_token())
    os.environ.setdefault("TESSERA_TOKEN", new_user_token("bench").text)
    user = parse_user_token(os.environ["TESSERA_TOKEN"])
    for state_dir in state_dirs:
        UserDirectory(Path(state_dir)).add(user)
    return user.text
