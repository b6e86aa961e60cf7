"""``python -m gateway``: run a Tessera gateway.

The only place that reads argv and the environment (``TESSERA_HOME``
relocates the default state directory; ``TESSERA_NETWORK_TOKEN`` holds the
network token).  Prints one startup line on stdout:
``gateway listening on <url> fingerprint <sha256:...>``.
``python -m gateway new-token`` prints a fresh network token and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from node.transport import loops
from node.cli import (
    LOG_LEVELS,
    NETWORK_TOKEN_ENV,
    CliError,
    OneLineParser,
    announce_and_wait,
    bind_error,
    configure_logging,
    fail,
    network_token,
    port_arg,
)
from node.transport.identity import StateDirError
from node.transport.tokens import new_network_token

from .registry import DEFAULT_DROP_AFTER, DEFAULT_HEARTBEAT_INTERVAL
from .server import GatewayServer
from .settings import DEFAULT_GATEWAY_PORT, GatewaySettings, default_gateway_state_dir

PROG = "gateway"
log = logging.getLogger("tessera.gateway")

MIN_HEARTBEAT_SECONDS = 0.05
MAX_HEARTBEAT_SECONDS = 3600.0


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Run a Tessera gateway: nodes register and heartbeat here, clients "
        "discover them; GET / shows a status page and /nodes.json the same as JSON.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=port_arg,
        default=DEFAULT_GATEWAY_PORT,
        help=f"port (default {DEFAULT_GATEWAY_PORT}; 0 = any free)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the gateway keeps its TLS key and certificate "
        "(default $TESSERA_HOME/gateway or ~/.tessera/gateway)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext ws:// without TLS (testing only)"
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=_heartbeat,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        help=f"interval nodes heartbeat at (default {DEFAULT_HEARTBEAT_INTERVAL:g}); a node "
        f"is offline after 3 missed, dropped after {DEFAULT_DROP_AFTER:g} s offline",
    )
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--token-file", type=Path, help=f"file holding the network token (or set {NETWORK_TOKEN_ENV})"
    )
    token.add_argument(
        "--token", help=f"the network token itself (visible in the process list: prefer "
        f"{NETWORK_TOKEN_ENV} or --token-file)"
    )
    token.add_argument(
        "--open", action="store_true",
        help="no network token: register any node that proves its key (testing only)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    return parser


def _heartbeat(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not MIN_HEARTBEAT_SECONDS <= value <= MAX_HEARTBEAT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"heartbeat of {text} s is outside {MIN_HEARTBEAT_SECONDS:g}-{MAX_HEARTBEAT_SECONDS:g} s"
        )
    return value


def parse(argv: list[str]) -> tuple[GatewaySettings, str]:
    """Settings and log level from the command line and ``TESSERA_HOME``."""
    parser = _parser()
    args = parser.parse_args(argv)
    token = None
    if not args.open:
        token = network_token(
            parser, args.token, args.token_file, os.environ.get(NETWORK_TOKEN_ENV)
        )
        if token is None:
            parser.error(
                f"a gateway needs a network token: set {NETWORK_TOKEN_ENV} or pass --token-file "
                "(make one with: python -m gateway new-token), or --open for a test network"
            )
    home = os.environ.get("TESSERA_HOME")
    state_dir = args.state_dir or (Path(home) / "gateway" if home else default_gateway_state_dir())
    settings = GatewaySettings(
        state_dir=state_dir.expanduser(),
        host=args.host,
        port=args.port,
        insecure=args.insecure,
        heartbeat_interval=args.heartbeat_seconds,
        network_token=token,
        open_network=bool(args.open),
    )
    return settings, str(args.log_level)


async def run(settings: GatewaySettings) -> None:
    """Start the gateway, print the startup line, serve until SIGINT/SIGTERM."""
    server = GatewayServer(settings)
    try:
        await server.start()
    except StateDirError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(bind_error(settings.host, settings.port, exc)) from None
    if settings.open_network:
        sys.stderr.write(
            f"{PROG}: WARNING: OPEN NETWORK: any node that holds a key pair can register\n"
        )
    if settings.insecure:
        # Written directly, not logged, so that no --log-level can hide it.
        sys.stderr.write(
            f"{PROG}: WARNING: INSECURE: TLS is off; registrations, node URLs and "
            "credentials travel in plaintext and anyone on the path can impersonate "
            "this gateway\n"
        )
    fingerprint = server.fingerprint or "none (insecure)"
    await announce_and_wait(f"gateway listening on {server.url} fingerprint {fingerprint}")
    log.info("shutting down")
    await server.close()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["new-token"]:
        if len(argv) > 1:
            fail(PROG, "new-token takes no arguments")
        print(new_network_token())
        return
    settings, log_level = parse(argv)
    configure_logging(log_level)
    if log_level != "debug":
        # One line per HTTP request (the status page polls every 2 s) is noise at info.
        logging.getLogger("tessera.websockets").setLevel(logging.WARNING)
    try:
        loops.run(run(settings))
    except CliError as exc:
        fail(PROG, str(exc))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
