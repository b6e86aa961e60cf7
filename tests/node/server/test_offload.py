"""The one inline-or-worker-thread policy: the boundary, and where offload runs its work."""

from __future__ import annotations

import asyncio
import threading

from node.server.offload import INLINE_ELEMENTS, offload, runs_inline


def test_work_below_the_limit_runs_inline() -> None:
    """Fewer than INLINE_ELEMENTS elements stay on the loop; the limit itself does not."""
    assert runs_inline(0) and runs_inline(INLINE_ELEMENTS - 1)
    assert not runs_inline(INLINE_ELEMENTS)


def test_offload_runs_small_work_on_the_loop_and_large_work_in_a_thread() -> None:
    """offload calls fn(*args) on the loop's own thread below the limit, in a worker thread above."""

    async def threads() -> tuple[int, int, int]:
        loop_thread = threading.get_ident()
        small = await offload(INLINE_ELEMENTS - 1, threading.get_ident)
        large = await offload(INLINE_ELEMENTS, threading.get_ident)
        return loop_thread, small, large

    loop_thread, small, large = asyncio.run(threads())
    assert small == loop_thread and large != loop_thread
    assert asyncio.run(offload(INLINE_ELEMENTS, pow, 2, 10)) == 1024
