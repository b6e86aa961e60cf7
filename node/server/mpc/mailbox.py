"""Letters between nodes for secret-sharing sessions: material, openings, aborts.

A party's step for a session waits here for what other nodes send it: its
material from the crypto provider (``mpc_material``) and the other parties'
masked values (``mpc_open``).  Either may arrive before the client's
``mpc_step`` that names who is allowed to send them, so a letter is kept
with its sender's proven identity (node id and certificate fingerprint) and
checked only when the step takes it: a letter from any other sender than the
one the client named for that slot is dropped.

Bounds: at most :data:`MAX_LETTERS` letters and :data:`MAX_BYTES_PER_SENDER`
bytes per sending node are buffered; a letter nobody takes expires after
:data:`LETTER_TTL` seconds, material (seed and explicit letters, which a
client may have dealt ahead of use) after :data:`MATERIAL_TTL`; every take
has a deadline.  A session is
single-use: once its step ends, late letters for it are dropped and a second
step with the same id is refused.  Runs on the node's event loop; must not
import websockets or the transport.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from protocol.errors import AlreadyExists, BadRequest, PeerUnavailable, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId
from protocol.mpc import MATERIAL_TTL

from node.server.store import Principal

__all__ = [
    "Mailbox",
    "Slot",
    "CompareRound",
    "Sender",
    "LETTER_TTL",
    "MATERIAL_TTL",
    "MAX_LETTERS",
    "MAX_BYTES_PER_SENDER",
    "FINISHED_TTL",
]

log = logging.getLogger("tessera.node.mpc")

LETTER_TTL = 120.0
"""Seconds an early opening or abort waits for the step that takes it (material: MATERIAL_TTL)."""

MAX_LETTERS = 4096
"""Letters buffered at once, all sessions and senders together."""

MAX_BYTES_PER_SENDER = 2 * 1024**3
"""Tensor bytes one sending node may have buffered here at once (2 GiB)."""

FINISHED_TTL = 600.0
"""Seconds a finished session id is remembered (late letters dropped, reuse refused)."""

Sender = tuple[NodeId, str]
"""A node id and the fingerprint of the certificate it proved it holds."""


class Slot(enum.Enum):
    """What a letter is, within its session."""

    SEED = "seed"
    EXPLICIT = "explicit"
    OPEN_BEAVER = "open_beaver"
    OPEN_TRUNCATION = "open_truncation"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class CompareRound:
    """Round ``k`` of a comparison step (``mpc_open.round`` = 2 + k): a slot of its own per round."""

    k: int

    @property
    def value(self) -> str:
        return f"open_compare_{self.k}"


Key = tuple[bytes, Slot | CompareRound, int]
"""(session, slot, index of the sending party; 0 for the crypto provider's letters)."""


@dataclass(frozen=True, slots=True)
class Letter:
    sender: Sender
    payload: Any
    nbytes: int
    expires: float


@dataclass
class _Session:
    principal: Principal
    peers: Mapping[int, Sender]
    waiters: dict[Key, tuple[Sender, asyncio.Future[Any]]]


class Mailbox:
    """Buffered letters and waiting steps, keyed by (session, slot, sender party)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # Each queue in expiry order (one constant TTL per queue, a monotonic
        # clock), so expiring looks at the oldest entries only, and ending a
        # session finds its letters through _keys: neither scans everything
        # buffered.  _letters finds a letter by key, whichever its queue.
        self._letters: dict[Key, Letter] = {}
        self._queues: tuple[dict[Key, float], dict[Key, float]] = ({}, {})
        self._keys: dict[bytes, set[Key]] = {}
        self._bytes: dict[NodeId, int] = {}
        self._active: dict[bytes, _Session] = {}
        self._finished: dict[bytes, float] = {}

    # -- senders ----------------------------------------------------------

    def post(self, key: Key, sender: Sender, payload: Any, nbytes: int) -> None:
        """A letter arrived from ``sender`` (a proven node)."""
        session_id, slot, index = key
        now = self.clock()
        self._expire(now)
        if session_id in self._finished:
            log.debug("dropping a late %s letter for a finished session", slot.value)
            return
        session = self._active.get(session_id)
        if session is not None:
            waiting = session.waiters.get(key)
            if waiting is not None:
                expected, future = waiting
                if expected != sender:
                    raise PermissionDenied(
                        f"this session expects that letter from {expected[0]!r}, not {sender[0]!r}",
                        {"expected": expected[0], "actual": sender[0]},
                    )
                del session.waiters[key]
                if not future.done():
                    future.set_result(payload)
                return
            if slot is Slot.ABORT:
                self._abort(session, index, sender, payload)
                return
        ttl = MATERIAL_TTL if _is_material(slot) else LETTER_TTL
        self._buffer(key, Letter(sender, payload, nbytes, now + ttl))

    def _buffer(self, key: Key, letter: Letter) -> None:
        if key in self._letters:
            raise AlreadyExists(f"a {key[1].value} letter for this session is already here", {})
        if len(self._letters) >= MAX_LETTERS:
            raise QuotaExceeded(
                f"at most {MAX_LETTERS} secret-sharing letters may wait at once",
                {"limit": MAX_LETTERS},
            )
        node = letter.sender[0]
        used = self._bytes.get(node, 0)
        if used + letter.nbytes > MAX_BYTES_PER_SENDER:
            raise QuotaExceeded(
                f"{node} already has {used} bytes of letters waiting here "
                f"(limit {MAX_BYTES_PER_SENDER})",
                {"limit": MAX_BYTES_PER_SENDER, "used": used, "size": letter.nbytes},
            )
        self._letters[key] = letter
        self._queues[_is_material(key[1])][key] = letter.expires
        self._keys.setdefault(key[0], set()).add(key)
        self._bytes[node] = used + letter.nbytes

    def _abort(self, session: _Session, index: int, sender: Sender, reason: Any) -> None:
        if session.peers.get(index) != sender:
            log.info("ignoring an abort from %s, not a party of the session", sender[0])
            return
        error = PeerUnavailable(f"party {index} ({sender[0]}) aborted: {reason}", {"party": index})
        for _, future in session.waiters.values():
            if not future.done():
                future.set_exception(error)
        session.waiters.clear()

    # -- the step ----------------------------------------------------------

    def begin(self, session_id: bytes, principal: Principal, peers: Mapping[int, Sender]) -> None:
        """Start ``session_id`` for ``principal``; refused if the id was ever used here."""
        self._expire(self.clock())
        if session_id in self._active or session_id in self._finished:
            raise AlreadyExists("this secret-sharing session id was already used here", {})
        self._active[session_id] = _Session(principal, dict(peers), {})
        for index, sender in peers.items():
            letter = self._letters.get((session_id, Slot.ABORT, index))
            if letter is not None and letter.sender == sender:
                self.end(session_id)
                raise PeerUnavailable(f"party {index} ({sender[0]}) aborted: {letter.payload}", {})

    def end(self, session_id: bytes) -> None:
        """The step is over: drop its letters and waiters; remember the id."""
        session = self._active.pop(session_id, None)
        if session is not None:
            for _, future in session.waiters.values():
                future.cancel()
        for key in list(self._keys.get(session_id, ())):
            self._drop(key)
        self._finished.pop(session_id, None)  # re-inserted at the end: expiry order
        self._finished[session_id] = self.clock() + FINISHED_TTL

    async def take(self, key: Key, sender: Sender, deadline: float, what: str) -> Any:
        """The letter for ``key`` from ``sender``, waiting until ``deadline`` (clock time)."""
        session = self._active.get(key[0])
        if session is None:
            raise BadRequest("no step of this session is running here", {})
        letter = self._letters.get(key)
        if letter is not None:
            self._drop(key)
            if letter.sender == sender:
                return letter.payload
            log.info("dropping a %s letter from %s: expected %s", key[1].value, letter.sender[0], sender[0])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        session.waiters[key] = (sender, future)
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - self.clock()))
        except (TimeoutError, asyncio.TimeoutError):
            raise PeerUnavailable(
                f"no {what} from {sender[0]} before the step's deadline", {"node": sender[0]}
            ) from None
        finally:
            session.waiters.pop(key, None)

    # -- housekeeping --------------------------------------------------------

    def _drop(self, key: Key) -> None:
        letter = self._letters.pop(key, None)
        if letter is not None:
            del self._queues[_is_material(key[1])][key]
            keys = self._keys.get(key[0])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[key[0]]
            node = letter.sender[0]
            self._bytes[node] = self._bytes.get(node, 0) - letter.nbytes
            if self._bytes[node] <= 0:
                del self._bytes[node]

    def _expire(self, now: float) -> None:
        """Drop what expired: the oldest entries first, stopping at the first live one."""
        for queue in self._queues:
            while queue:
                key, expires = next(iter(queue.items()))
                if expires >= now:
                    break
                self._drop(key)
        while self._finished:
            session_id, until = next(iter(self._finished.items()))
            if until >= now:
                break
            del self._finished[session_id]

    @property
    def buffered(self) -> int:
        """Letters waiting (for tests and logs)."""
        return len(self._letters)


def _is_material(slot: Slot | CompareRound) -> bool:
    """The crypto provider's letters, which may be dealt long before their step (MATERIAL_TTL)."""
    return slot is Slot.SEED or slot is Slot.EXPLICIT
