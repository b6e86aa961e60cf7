"""Connections dialed in the background, and how a job closes them (no network: a stand-in handle)."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from node.client.fl.dialing import BackgroundDial
from node.client.handle import NodeHandle
from node.fl.links import close_quietly


class Handle:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        if self.fail:
            raise ConnectionError("already gone")


def test_closing_a_dial_closes_its_connection_and_the_job_swallows_a_failure() -> None:
    """close() closes the opened handle (raising what it raised); close_quietly, as a job ends, only logs it."""
    handle = Handle(fail=True)
    dial = BackgroundDial(lambda: cast(NodeHandle, handle), "owner")
    assert cast(object, dial.handle()) is handle
    with pytest.raises(ConnectionError):
        dial.close()
    close_quietly(dial)
    assert handle.closed == 2
    close_quietly(object())  # a link without close() is left alone


def test_a_connection_that_opens_after_the_job_ended_is_closed_quietly() -> None:
    """The dial's own thread closes a late connection; its failure goes nowhere."""
    release, handle = threading.Event(), Handle(fail=True)

    def connect() -> Any:
        release.wait(5)
        return handle

    dial = BackgroundDial(connect, "owner")
    dial.close()
    release.set()
    for _ in range(500):
        if handle.closed:
            break
        threading.Event().wait(0.01)
    assert handle.closed == 1
