"""Resident memory of a process, from /proc (Linux).

``reset_peak_rss`` writes 5 to ``/proc/PID/clear_refs``, which resets the
kernel's high-water mark (VmHWM) so a peak can be measured per phase.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["rss", "peak_rss", "reset_peak_rss"]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for process {pid}")


def rss(pid: int) -> int:
    """Current resident set size in bytes."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """Peak resident set size in bytes since start or the last reset."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> None:
    """Start a new peak measurement (best effort: needs permission on that process)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass
