"""Event loops: uvloop when it is installed (``pip install tessera[fast]``), else asyncio's.

uvloop's transports cut per-message overhead; nothing in Tessera depends on
it.  Entry points run their main coroutine with :func:`run`; the client's
private loop thread asks :func:`new_event_loop`.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any, Callable, Coroutine, TypeVar

__all__ = ["run", "new_event_loop", "loop_name"]

T = TypeVar("T")


def _factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the best available kind."""
    factory = _factory()
    return factory() if factory is not None else asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the best available loop."""
    factory = _factory()
    if factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # pragma: no cover - Python 3.10
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def loop_name() -> str:
    return "uvloop" if _factory() is not None else "asyncio"
