"""Command-line plumbing shared by ``python -m node`` and ``python -m gateway``.

argparse prints usage plus an error and exits 2; operators asked for one
line, so :class:`OneLineParser` prints ``prog: error: ...`` alone.  Logging
goes to stderr; stdout carries only the startup line that scripts parse.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

__all__ = ["OneLineParser", "CliError", "configure_logging", "fail", "LOG_LEVELS"]

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
