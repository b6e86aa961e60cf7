"""What the gateway knows about a node: its record, its datasets, its status.

Pure data with validation limits.  Tags are how data scientists find data
(``#breast_cancer``); they live on the node and on each dataset, so search
works before federated learning brings real datasets.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Optional, Tuple

from .errors import MalformedMessage
from .ids import NodeId

__all__ = [
    "Role",
    "DatasetPolicy",
    "DatasetSummary",
    "NodeRecord",
    "NodeStatus",
    "MAX_DATASETS",
    "MAX_TAGS",
    "MAX_URL_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "TAG_PATTERN",
    "normalize_tag",
    "validate_node_url",
]

MAX_DATASETS = 256
"""Most datasets one node may announce."""

MAX_TAGS = 32
"""Most tags on a node or on one dataset."""

MAX_URL_CHARS = 512
MAX_DESCRIPTION_CHARS = 2048

TAG_PATTERN = re.compile(r"#[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A tag: ``#`` then 1-64 letters, digits, ``_ . -`` (stored lower-case)."""


class Role(str, enum.Enum):
    """What a node offers the network."""

    COMPUTE = "compute"
    DATA_OWNER = "data_owner"
    TRAINER = "trainer"
    CRYPTO_PROVIDER = "crypto_provider"


def normalize_tag(text: str) -> str:
    """``breast_cancer`` or ``#Breast_Cancer`` -> ``#breast_cancer``; else ValueError."""
    tag = text if text.startswith("#") else "#" + text
    if not TAG_PATTERN.fullmatch(tag):
        raise ValueError(f"invalid tag {text[:80]!r}: use '#' and 1-64 letters, digits, '_', '.', '-'")
    return tag.lower()


NODE_URL_PATTERN = re.compile(
    r"(?P<scheme>wss|ws)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(?P<port>[0-9]{1,5})/?"
)
"""``wss://host:port``: a DNS name, IPv4 literal or bracketed IPv6 literal, no path."""


def validate_node_url(url: str) -> str:
    """A dialable node URL: ``wss://host:port`` (or ``ws://`` for insecure nodes)."""
    if len(url) > MAX_URL_CHARS:
        raise MalformedMessage("node URL is too long", {"limit": MAX_URL_CHARS})
    match = NODE_URL_PATTERN.fullmatch(url)
    if match is None or not 0 < int(match.group("port")) < 65536:
        raise MalformedMessage(
            f"node URL must be wss://host:port (or ws:// for insecure nodes), got {url[:80]!r}", {}
        )
    return url


@dataclass(frozen=True, slots=True)
class DatasetPolicy:
    """A dataset's training policy as its owner announces it: the operator's limits, never data.

    ``epsilon`` is the dataset's DP budget and ``epsilon_remaining`` what was
    left when the owner last registered (``train_reply`` says it exactly);
    both, ``delta``, ``noise_multiplier`` and ``max_grad_norm`` are ``None``
    when DP is off.  ``secure_min_owners`` 0 means plain ``train`` is
    allowed; ``allowed_layers`` ``None`` means the whole allowlist.
    """

    dp: bool
    epsilon: Optional[float] = None
    epsilon_remaining: Optional[float] = None
    delta: Optional[float] = None
    noise_multiplier: Optional[float] = None
    max_grad_norm: Optional[float] = None
    min_batch: int = 1
    min_samples: int = 1
    secure_min_owners: int = 0
    max_model_elements: int = 0
    allowed_layers: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """A dataset a data owner announces: never its rows, only what it is and its training policy."""

    name: str
    tags: Tuple[str, ...] = ()
    description: str = ""
    shape: Tuple[int, ...] = ()
    samples: int = 0
    policy: Optional[DatasetPolicy] = None
    """``None`` from owners that announce no policy (older nodes)."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """How to reach a node and what it offers; registered by the node itself."""

    node_id: NodeId
    url: str
    fingerprint: str
    roles: Tuple[Role, ...] = (Role.COMPUTE,)
    tags: Tuple[str, ...] = ()
    datasets: Tuple[DatasetSummary, ...] = field(default_factory=tuple)

    def matches(self, tag: str) -> bool:
        """Whether the node or one of its datasets carries ``tag``."""
        return tag in self.tags or any(tag in d.tags for d in self.datasets)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A record as the gateway sees it now."""

    record: NodeRecord
    last_seen: float
    """Unix time of the last registration or heartbeat."""
    online: bool
