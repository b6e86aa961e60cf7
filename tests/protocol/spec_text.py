"""Reading PROTOCOL.md in tests: its sections, table rows, code blocks and hex dumps."""

from __future__ import annotations

import re
from pathlib import Path

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "protocol" / "PROTOCOL.md"


def spec_text() -> str:
    return PROTOCOL_MD.read_text(encoding="utf-8")


def sections(text: str, level: str = "### ") -> dict[str, str]:
    """Heading line -> the text up to the next heading of the same or a higher level."""
    found: dict[str, str] = {}
    heading: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= len(level) - 1:
            if heading is not None:
                found[heading] = "\n".join(lines)
            heading, lines = (line if line.startswith(level) else None), []
        elif heading is not None:
            lines.append(line)
    if heading is not None:
        found[heading] = "\n".join(lines)
    return found


def section(text: str, prefix: str) -> str:
    """The one section whose heading starts with ``prefix`` (e.g. ``"### 15.4 "``)."""
    level = prefix.split(" ")[0] + " "
    matches = [body for heading, body in sections(text, level).items() if heading.startswith(prefix)]
    assert len(matches) == 1, f"PROTOCOL.md needs exactly one section {prefix!r}"
    return matches[0]


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of ``text``, without their fences."""
    return re.findall(r"^```\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def hexdump(data: bytes) -> list[str]:
    """``data`` as PROTOCOL.md's dumps show it: offset, 16 hex bytes, printable ASCII."""
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        hexed = " ".join(f"{byte:02x}" for byte in chunk).ljust(48)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:04x}  {hexed}  {text}".rstrip())
    return lines


def contains_dump(text: str, data: bytes) -> bool:
    """Whether ``text`` holds the hex dump of ``data`` as consecutive lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    dump = hexdump(data)
    return any(lines[i : i + len(dump)] == dump for i, line in enumerate(lines) if line == dump[0])
