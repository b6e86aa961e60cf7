"""``python -m gateway``: run a Tessera gateway.

The only place that reads argv and the environment (``TESSERA_HOME``
relocates the default state directory; ``TESSERA_NETWORK_TOKEN`` holds the
network token).  Prints one startup line on stdout:
``gateway listening on <url> fingerprint <sha256:...>``.
``python -m gateway new-token`` prints a fresh network token and exits.
``python -m gateway bindings list|remove ID|rebind ID --fingerprint FP``
shows or changes which certificate each node id is bound to (the state
directory's ``bindings.json``; a running gateway adopts the change).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import time
from pathlib import Path

from peer.transport import loops
from peer.cli import (
    LOG_LEVELS,
    NETWORK_TOKEN_ENV,
    CliError,
    OneLineParser,
    announce_and_wait,
    bind_error,
    configure_logging,
    fail,
    fingerprint_arg,
    network_token,
    port_arg,
)
from peer.security.identity import StateDirError
from peer.security.tokens import new_network_token
from protocol.ids import NodeId

from .bindings import Binding, BindingFile, Bindings, node_id_arg
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
        epilog="Other commands: 'new-token' prints a fresh network token; 'bindings "
        "list|remove|rebind' shows or changes the certificate each node id is bound to "
        "(see 'bindings --help').",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=port_arg,
        default=DEFAULT_GATEWAY_PORT,
        help=f"port (default {DEFAULT_GATEWAY_PORT}; 0 = any free)",
    )
    _state_dir_arg(parser)
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


def _state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the gateway keeps its TLS key and certificate and its id bindings "
        "(default $TESSERA_HOME/gateway or ~/.tessera/gateway)",
    )


def _state_dir(given: Path | None) -> Path:
    home = os.environ.get("TESSERA_HOME")
    state_dir = given or (Path(home) / "gateway" if home else default_gateway_state_dir())
    return state_dir.expanduser()


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
    settings = GatewaySettings(
        state_dir=_state_dir(args.state_dir),
        host=args.host,
        port=args.port,
        insecure=args.insecure,
        heartbeat_interval=args.heartbeat_seconds,
        network_token=token,
        open_network=bool(args.open),
    )
    return settings, str(args.log_level)


def _bindings_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=f"{PROG} bindings",
        description="Show or change which certificate each node id is bound to.  The first "
        "registration of an id binds it; only these commands change a binding.  A running "
        "gateway adopts a change within one heartbeat interval, or at once when the node "
        "it concerns retries.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="print each bound id, its fingerprint and since when")
    remove = commands.add_parser(
        "remove", help="unbind ID: the next node to register it binds it (to give an id to "
        "a new key, prefer rebind)"
    )
    remove.add_argument("node_id", metavar="ID", type=_node_id)
    rebind = commands.add_parser(
        "rebind", help="bind ID to the certificate with this fingerprint (a node whose key "
        "changed, or an id reserved before its node first registers)"
    )
    rebind.add_argument("node_id", metavar="ID", type=_node_id)
    rebind.add_argument(
        "--fingerprint", required=True, type=fingerprint_arg,
        help="the node's certificate fingerprint, sha256:<64 hex> (its startup line prints it)",
    )
    for command in (listing, remove, rebind):
        _state_dir_arg(command)
    return parser


def _node_id(text: str) -> NodeId:
    try:
        return node_id_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid node id: {exc}") from None


def bindings(argv: list[str]) -> None:
    """``python -m gateway bindings ...``: list, remove or rebind; CliError or StateDirError."""
    args = _bindings_parser().parse_args(argv)
    state_dir = _state_dir(args.state_dir)
    if not state_dir.is_dir():
        raise CliError(
            f"state dir {state_dir} does not exist: pass the gateway's --state-dir "
            "(or start the gateway once)"
        )
    file = BindingFile(state_dir)
    if args.command == "list":
        _print_bindings(file.load())
    elif args.command == "remove":
        _remove(file, args.node_id)
    else:
        _rebind(file, args.node_id, args.fingerprint)


def _remove(file: BindingFile, node_id: NodeId) -> None:
    removed: list[Binding] = []

    def change(table: Bindings) -> None:
        if node_id in table:
            removed.append(table.pop(node_id))

    file.edit(change)
    if not removed:
        raise CliError(f"node id {node_id!r} is not bound in {file.path}")
    print(f"node id {node_id!r} is unbound; the next node to register it binds it")


def _rebind(file: BindingFile, node_id: NodeId, fingerprint: str) -> None:
    def change(table: Bindings) -> None:
        table[node_id] = Binding(fingerprint, time.time())

    file.edit(change)
    print(f"node id {node_id!r} is bound to {fingerprint}")


def _print_bindings(table: Bindings) -> None:
    if not table:
        sys.stderr.write("no node id is bound yet\n")
    width = max((len(node_id) for node_id in table), default=0)
    for node_id, binding in sorted(table.items()):
        since = datetime.datetime.fromtimestamp(binding.bound_at, datetime.timezone.utc)
        print(f"{node_id:<{width}}  {binding.fingerprint}  since {since:%Y-%m-%dT%H:%M:%SZ}")


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
    if argv[:1] == ["bindings"]:
        try:
            bindings(argv[1:])
        except (CliError, StateDirError) as exc:
            fail(PROG, str(exc))
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
