"""Command-line plumbing shared by ``python -m node`` and ``python -m gateway``.

argparse prints usage plus an error and exits 2; operators asked for one
line, so :class:`OneLineParser` prints ``prog: error: ...`` alone.  Logging
goes to stderr; stdout carries only the startup line that scripts parse.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

from peer.security.identity import normalize_fingerprint
from peer.security.tokens import validate_network_token

__all__ = [
    "OneLineParser",
    "CliError",
    "configure_logging",
    "fail",
    "LOG_LEVELS",
    "port_arg",
    "positive_int_arg",
    "bind_error",
    "announce_and_wait",
    "network_token",
    "NETWORK_TOKEN_ENV",
]

NETWORK_TOKEN_ENV = "TESSERA_NETWORK_TOKEN"
"""Environment variable holding the network token (gateway and member nodes)."""

LOG_LEVELS = ("debug", "info", "warning", "error")


class CliError(Exception):
    """A startup problem reported as one line, exit status 1."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(prog: str, message: str) -> NoReturn:
    """Print ``prog: error: message`` and exit 1."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(1)


def network_token(
    parser: OneLineParser, given: str | None, token_file: Path | None, env_value: str | None
) -> str | None:
    """The network token from ``--token``, a token file or the environment (in that order).

    Files and the environment are preferred in docs: a token on the command
    line is visible to every local user in the process list.
    """
    text = given
    if text is None and token_file is not None:
        try:
            text = token_file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            parser.error(f"cannot read the network token file {token_file}: {exc.strerror}")
    if text is None:
        text = env_value or None
    if text is None:
        return None
    try:
        return validate_network_token(text)
    except ValueError as exc:
        parser.error(str(exc))


def port_arg(text: str) -> int:
    """argparse type: a TCP port, 0 meaning any free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value


def fingerprint_arg(text: str) -> str:
    """argparse type: a certificate fingerprint, normalised to ``sha256:<64 hex>``."""
    try:
        return normalize_fingerprint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int_arg(text: str) -> int:
    """argparse type: an integer above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


_BIND_REASONS = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "address not available on this machine",
    errno.EACCES: "permission denied",
}


def bind_error(host: str, port: int, exc: OSError) -> str:
    """One line saying why ``host:port`` could not be bound."""
    reason = _BIND_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {reason}"


async def announce_and_wait(startup_line: str) -> None:
    """Install SIGINT/SIGTERM handlers, print the startup line, wait for a signal.

    Handlers go in first, so a supervisor that signals as soon as it reads
    the line always gets a clean shutdown.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(startup_line, flush=True)
    await stop.wait()
