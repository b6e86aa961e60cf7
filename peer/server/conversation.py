"""What every server-side connection shares: decoding, the hello gate, error translation.

A :class:`Conversation` turns frames into outcomes without I/O (the
python-websockets "sans-I/O" shape).  It decodes each frame, lets nothing
but a ``hello`` through until the caller is authenticated, dispatches by
message kind through the subclass's handler table, and is the one place
where errors become replies: a :class:`~protocol.errors.TesseraError`
becomes an error reply with its code; anything else, a
:class:`~protocol.errors.LocalProtocolError` included (this side built a
message wrong: the peer is not at fault), is logged with its traceback and
answered ``INTERNAL`` with no detail.  The node's
:class:`~node.server.session.Session` and the gateway's session are its
two subclasses; the gateway's decodes with ``tensors=False``, so no frame
can make it import torch.  Must not import asyncio or websockets.
"""

from __future__ import annotations

import enum
import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

from protocol.codec import decode_message
from protocol.errors import (
    BadRequest,
    InternalError,
    LocalProtocolError,
    RemoteProtocolError,
    TesseraError,
    Unauthenticated,
    VersionMismatch,
)
from protocol.ids import NodeId, RequestId
from protocol.messages import ErrorReply, HelloRequest, Message, MessageKind, Reply, Request

from peer.server.auth import Authenticator, Caller, Principal
from peer.server.redaction import Exposure, current, exposed, log_text, screen, withheld

__all__ = ["Conversation", "SessionState", "Outcome", "CLOSE_POLICY", "CLOSE_PROTOCOL"]

CLOSE_POLICY = 1008
"""Close code after a refused handshake (RFC 6455 policy violation)."""

CLOSE_PROTOCOL = 1002
"""Close code after a protocol version mismatch."""


class SessionState(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to send back (if anything) and whether to close afterwards."""

    reply: Reply | None = None
    close_code: int | None = None
    close_reason: str = ""


_NOTHING = Outcome()


class Conversation:
    """One connection's state machine; subclasses provide ``handlers`` and ``not_served``."""

    log: ClassVar[logging.Logger] = logging.getLogger("tessera.session")

    def __init__(
        self,
        node_id: NodeId,
        roles: tuple[str, ...],
        authenticator: Authenticator,
        max_message_bytes: int,
        peer: str,
        *,
        tensors: bool = True,
    ) -> None:
        self.node_id = node_id
        self.roles = roles
        self.authenticator = authenticator
        self.max_message_bytes = max_message_bytes
        self.peer = peer
        self.tensors = tensors
        """Whether frames may carry tensor and dtype values (``False``: BAD_REQUEST, torch never loaded)."""
        self.state = SessionState.AWAITING_HELLO
        self.caller: Caller | None = None
        self.handlers: Mapping[MessageKind, Callable[[Any], Any]] = {}
        """Request kind -> handler, served once the connection is open."""

    @property
    def principal(self) -> Principal | None:
        """Who requests on this connection are attributed to, once authenticated."""
        return self.caller.principal if self.caller is not None else None

    def receive(self, frame: bytes | bytearray | memoryview) -> Any:
        """Handle one binary frame."""
        if self.state is SessionState.CLOSED:
            return _NOTHING
        try:
            message = decode_message(frame, self.max_message_bytes, tensors=self.tensors)
        except RemoteProtocolError as exc:
            self.log.info("bad frame from %s: %s", self.peer, exc)
            reply = ErrorReply.from_exception(RequestId(exc.request_id), exc)
            if isinstance(exc, VersionMismatch):
                return self._close(reply, CLOSE_PROTOCOL, "protocol version mismatch")
            return Outcome(reply)
        return self.handle(message)

    def handle(self, message: Message) -> Any:
        """Handle one decoded message."""
        if isinstance(message, HelloRequest):
            return self._guard(message, self._hello)
        if self.state is not SessionState.OPEN or self.caller is None:
            exc = Unauthenticated("the connection must open with a hello", {})
            return self._close(ErrorReply.from_exception(message.id, exc), CLOSE_POLICY, "no hello")
        handler = self.handlers.get(message.KIND)
        if handler is None:
            return Outcome(ErrorReply.from_exception(message.id, self.not_served(message)))
        return self._guard(message, handler)  # type: ignore[arg-type]

    def not_served(self, message: Message) -> TesseraError:
        """The error for a kind this side does not serve."""
        raise NotImplementedError

    def close(self) -> None:
        self.state = SessionState.CLOSED

    def _close(self, reply: ErrorReply, code: int, reason: str) -> Outcome:
        self.state = SessionState.CLOSED
        return Outcome(reply, code, reason)

    def _guard(self, request: Request, handler: Callable[[Any], Any]) -> Any:
        """The one error translation point: every request's handler runs here.

        The request gets an :class:`~peer.server.redaction.Exposure`; its
        error, if any, is screened against it (:meth:`error_reply`).  The
        work a handler hands back (a subclass's ``Work``/``AsyncWork``)
        keeps the same exposure through :meth:`carry`.
        """
        exposure = Exposure()
        with exposed(exposure):
            try:
                step = handler(request)
            except Exception as exc:
                if isinstance(exc, TesseraError) and isinstance(request, HelloRequest):
                    self.log.debug("hello from %s refused: %s", self.peer, exc)
                    return self._close(request.error(exc), CLOSE_POLICY, "handshake refused")
                return Outcome(self.error_reply(request, exc))
        return self.carry(step, exposure)

    def carry(self, step: Any, exposure: Exposure) -> Any:
        """``step`` made to run later under ``exposure`` (here: outcomes need nothing)."""
        return step

    def error_reply(self, request: Request, exc: Exception) -> ErrorReply:
        """The reply for ``request``'s failure, screened for restricted data; never raises.

        A :class:`~protocol.errors.TesseraError` keeps its code unless the
        request touched data its caller may not read (then only refusals
        pass: :func:`~peer.server.redaction.screen`); anything else, and a
        :class:`~protocol.errors.LocalProtocolError` (a message this side
        failed to encode: its bug, not the caller's), is logged and answered
        ``INTERNAL`` with no detail.
        """
        exposure = current()
        kind = request.KIND.value
        if isinstance(exc, TesseraError) and not isinstance(exc, LocalProtocolError):
            self.log.debug("%s from %s failed: %s", kind, self.peer, log_text(exc, exposure))
            return request.error(screen(kind, exc, exposure))
        if exposure is not None and exposure.restricted:
            # Where it failed (code lines), never the message (it may hold values).
            where = "".join(traceback.format_tb(exc.__traceback__))
            self.log.error(
                "internal error handling %s from %s: %s\n%s", kind, self.peer, log_text(exc, exposure), where
            )
            return request.error(withheld(kind))
        self.log.error("internal error handling %s from %s", kind, self.peer, exc_info=exc)
        return request.error(InternalError("internal error", {}))

    def _hello(self, request: HelloRequest) -> Outcome:
        if self.state is SessionState.OPEN:
            raise BadRequest("the connection is already open", {})
        self.caller = self.authenticator.authenticate(request)
        self.state = SessionState.OPEN
        self.log.info(
            "%r connected from %s as %s", request.client, self.peer, self.caller.principal
        )
        welcome = self.authenticator.welcome(self.node_id, request)
        reply = request.reply(
            self.node_id, self.caller.principal, self.roles, self.max_message_bytes, welcome
        )
        return Outcome(reply)
