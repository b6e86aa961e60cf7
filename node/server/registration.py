"""Keeping a node registered at the gateway.

One task per node: dial the gateway (pinned or CA-verified TLS), prove the
node's identity, ``register`` its record, then ``heartbeat`` at the interval
the gateway asks for.  Any failure (gateway down, restarted, unreachable)
closes the connection and starts again after a capped, jittered backoff, so
the gateway's soft state refills by itself within seconds of its return.
On clean shutdown the node deregisters.  The node keeps serving direct
connections whatever the gateway does.  With a ``refresh`` source, a
changed record (a dataset's DP budget left) is registered again in place of
a heartbeat, at most every :data:`REANNOUNCE_HEARTBEATS` heartbeats and
:data:`MIN_REANNOUNCE_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Callable

from protocol.errors import TesseraError
from protocol.messages import (
    AckReply,
    DeregisterRequest,
    ErrorReply,
    HeartbeatRequest,
    RegisterReply,
    RegisterRequest,
    Reply,
)
from protocol.records import NodeRecord

from peer.transport.backoff import backoff_delay
from peer.client.async_channel import AsyncChannel
from peer.client.core import Build, Built
from peer.client.endpoint import Endpoint
from peer.client.tracker import rebuild_error

__all__ = ["GatewayRegistration"]

log = logging.getLogger("tessera.node.registration")

DEREGISTER_TIMEOUT = 3.0

REANNOUNCE_HEARTBEATS = 5
"""A changed record is registered again at most every this many heartbeat intervals..."""

MIN_REANNOUNCE_INTERVAL = 3.0
"""...and never more often than every this many seconds (the gateway allows 20 registrations per minute
and connection)."""


class GatewayRegistration:
    """Registers ``record`` at the gateway and keeps it fresh until stopped."""

    def __init__(self, endpoint: Endpoint, record: NodeRecord, rng: random.Random | None = None,
                 refresh: Callable[[], NodeRecord] | None = None) -> None:
        self.endpoint = endpoint
        self.record = record
        self.refresh = refresh
        """The node's current record (cheap, on the loop); a change is announced again."""
        self._announced = 0.0
        self.rng = rng or random.Random()
        self.registered = asyncio.Event()
        self._channel: AsyncChannel | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway-registration")

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._session()
            except TesseraError as exc:
                log.warning("gateway %s: %s", self.endpoint.url, exc)
            except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
                log.warning("gateway %s unreachable: %s", self.endpoint.url, exc or type(exc).__name__)
            except Exception:  # keep the node registered whatever went wrong
                log.exception("gateway registration failed")
            finally:
                if self.registered.is_set():
                    attempt = 0  # it worked for a while: start the backoff afresh
                self.registered.clear()
                await self._drop_channel()
            delay = backoff_delay(attempt, self.rng)
            attempt += 1
            log.debug("retrying the gateway in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One connection: register, then heartbeat until something fails."""
        channel = AsyncChannel(self.endpoint)
        self._channel = channel
        await channel.open()
        reply = await self._call(channel, lambda rid: RegisterRequest(rid, self.record))
        assert isinstance(reply, RegisterReply)
        interval = max(0.1, reply.heartbeat_interval)
        self._announced = time.monotonic()
        self.registered.set()
        log.info("registered at gateway %s as %s", self.endpoint.url, self.record.url)
        while True:
            await asyncio.sleep(interval)
            changed = self._changed(max(MIN_REANNOUNCE_INTERVAL, REANNOUNCE_HEARTBEATS * interval))
            if changed is not None:
                await self._call(channel, lambda rid: RegisterRequest(rid, changed), 3 * interval)
                self.record, self._announced = changed, time.monotonic()
                continue
            await self._call(channel, HeartbeatRequest, 3 * interval)

    def _changed(self, spacing: float) -> NodeRecord | None:
        """The node's record, if it changed since it was announced ``spacing`` or more seconds ago."""
        if self.refresh is None or time.monotonic() - self._announced < spacing:
            return None
        record = self.refresh()
        return None if record == self.record else record

    async def _call(self, channel: AsyncChannel, build: Build, timeout: float = 10.0) -> Reply:
        built = Built(build)
        reply = await asyncio.wait_for(channel.call(built), timeout)
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, built.kind, self.endpoint.url)
        if not isinstance(reply, (RegisterReply, AckReply)):
            raise TesseraError(f"gateway answered {built.kind} with {reply.KIND.value}", {})
        return reply

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.aclose()

    async def stop(self) -> None:
        """Deregister (best effort, bounded), then stop the task."""
        channel = self._channel
        # Also while a register is in flight: the gateway may list the node
        # before its reply arrives, and it handles the deregister after it.
        if channel is not None and (self.registered.is_set() or channel.connected):
            try:
                await asyncio.wait_for(channel.call(DeregisterRequest), DEREGISTER_TIMEOUT)
                log.info("deregistered from gateway %s", self.endpoint.url)
            except (TesseraError, OSError, asyncio.TimeoutError, TimeoutError) as exc:
                log.info("could not deregister: %s", exc)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._drop_channel()
