"""The node's allocator tuning: applied on glibc, harmless to call twice."""

from __future__ import annotations

import platform
import sys

import torch

from node.allocator import keep_large_buffers


def test_applies_on_glibc_and_can_be_repeated() -> None:
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_large_buffers() is expected
    assert keep_large_buffers() is expected


def test_large_buffers_still_work_after_tuning() -> None:
    keep_large_buffers()
    for _ in range(3):
        values = torch.arange(2_000_000, dtype=torch.int64)
        assert int(values[-1]) == 1_999_999
        del values
