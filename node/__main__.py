"""``python -m node``: run a Tessera node.

The only place that reads argv and the environment (``TESSERA_HOME``
relocates the default state directories; ``TESSERA_NETWORK_TOKEN`` holds the
network token).  Prints one startup line on stdout:
``node <id> listening on <url> fingerprint <sha256:...>``.
``python -m node users ...`` manages the node's users instead
(:mod:`node.users_cli`), and ``python -m node audit ...`` shows its
training audit trail (:mod:`node.audit_cli`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from protocol.errors import MalformedMessage
from protocol.records import Role, normalize_tag, validate_node_url

from .allocator import keep_large_buffers
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
    positive_int_arg,
)
from .fl.datasets import parse_dataset_spec
from .fl.errors import DatasetError, LedgerError
from .fl.policy import (
    DEFAULT_EPSILON,
    DEFAULT_MAX_GRAD_NORM,
    DEFAULT_MAX_MODEL_ELEMENTS,
    DEFAULT_MIN_BATCH,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_NOISE_MULTIPLIER,
    POLICY_KEYS,
    PolicyError,
    TrainingPolicy,
    load_policy_file,
    policy_from_mapping,
)
from .server.runtime import NodeServer
from .settings import DEFAULT_PORT, DatasetSource, NodeSettings, default_state_dir, validate_node_id
from peer.transport import loops
from .server.users import UsersFileError
from peer.security.identity import StateDirError, normalize_fingerprint
from .audit_cli import audit_main
from .users_cli import users_main

PROG = "node"
log = logging.getLogger("tessera.node")


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Run a Tessera node: stores tensors and runs allowlisted commands "
        "for clients over TLS WebSockets.",
    )
    parser.add_argument("--id", required=True, help="this node's id, e.g. alice")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_arg, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the node keeps its TLS key and certificate "
        "(default $TESSERA_HOME/nodes/<id> or ~/.tessera/nodes/<id>)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext ws:// without TLS (testing only)"
    )
    parser.add_argument(
        "--max-message-mib", type=positive_int_arg, default=256, help="largest frame accepted (MiB)"
    )
    parser.add_argument(
        "--gateway", metavar="URL", help="register at this gateway, e.g. wss://10.0.0.1:5000"
    )
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--gateway-cafile", type=Path, help="the gateway's cert.pem (or a CA bundle)")
    trust.add_argument("--gateway-fingerprint", help="the gateway's sha256:... fingerprint")
    parser.add_argument(
        "--advertise",
        metavar="URL",
        help="URL others should dial (default: derived from --host and --port)",
    )
    parser.add_argument(
        "--role",
        action="append",
        choices=[role.value for role in Role],
        help="what this node offers (repeatable; default compute)",
    )
    parser.add_argument("--tag", action="append", default=[], help="a tag like '#hospital' (repeatable)")
    parser.add_argument(
        "--max-objects", type=positive_int_arg, default=100_000,
        help="objects one principal may hold (default 100000)",
    )
    parser.add_argument(
        "--max-memory-mib", type=positive_int_arg, default=8192,
        help="memory one principal may hold, in MiB (default 8192): stored tensors, unfinished "
        "uploads and transfers, queued frames, trainer jobs, parked secure-aggregation updates",
    )
    parser.add_argument(
        "--max-connections-per-principal", type=positive_int_arg, default=64,
        help="open connections one principal may have (default 64)",
    )
    parser.add_argument(
        "--network-token-file", type=Path,
        help=f"file holding the network token (or set {NETWORK_TOKEN_ENV}); needed with "
        "--gateway and for node-to-node transfers",
    )
    parser.add_argument(
        "--torch-threads", type=positive_int_arg, default=1,
        help="threads torch may use per op (default 1: best for many small ops)",
    )
    parser.add_argument(
        "--allow-anonymous", action="store_true",
        help="let clients in without a user token (development only)",
    )
    parser.add_argument(
        "--trust-crypto-provider", action="append", default=[], metavar="FINGERPRINT",
        type=fingerprint_arg,
        help="certificate fingerprint (sha256:...) of a crypto provider this node trusts for "
        "secret-shared products of data the asking client may not read (repeatable; none by default: "
        "a provider that colludes with a party could open such shares)",
    )
    _dataset_args(parser)
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    return parser


def _dataset_args(parser: OneLineParser) -> None:
    parser.add_argument(
        "--dataset", action="append", default=[], metavar="NAME=PATH",
        help="a private dataset (.csv, .npz or .safetensors) others may train on "
        "but never read (repeatable); announced with the node's --tag tags",
    )
    parser.add_argument(
        "--dataset-label", default="label", metavar="COLUMN",
        help="label column of CSV datasets (default label)",
    )
    parser.add_argument("--dataset-description", default="", help="description announced for the datasets")
    parser.add_argument(
        "--dataset-heldout", type=float, default=0.2, metavar="FRACTION",
        help="share of each dataset's rows kept for held-out metrics, never trained on (default 0.2)",
    )
    _policy_args(parser)


POLICY_FLAGS = {
    "dp": "--no-dp",
    "epsilon": "--dp-epsilon",
    "delta": "--dp-delta",
    "noise_multiplier": "--dp-noise",
    "max_grad_norm": "--dp-clip",
    "min_batch": "--min-batch",
    "min_samples": "--min-samples",
    "secure_aggregation_min_owners": "--secure-aggregation-min-owners",
    "max_model_elements": "--max-model-elements",
    "allowed_layers": "--allowed-layers",
}
"""Policy keys (a policy file's, node.fl.policy.POLICY_KEYS) and the flags that set them."""


def _policy_args(parser: OneLineParser) -> None:
    group = parser.add_argument_group(
        "training policy",
        "what may be learned from the datasets: these flags apply to every dataset without its own "
        "--dataset-policy file (a file replaces them for its dataset; keys it omits take the defaults). "
        "The defaults are safe: DP-SGD on, a finite budget, a minimum batch, a model size cap.",
    )
    group.add_argument(
        "--dataset-policy", action="append", default=[], metavar="NAME=PATH",
        help="a .json or .toml policy file for dataset NAME (repeatable); keys: " + ", ".join(POLICY_KEYS),
    )
    group.add_argument("--no-dp", dest="dp", action="store_false", default=None,
                       help="train without DP-SGD (rows can then be reconstructed from updates)")
    group.add_argument("--dp-epsilon", dest="epsilon", type=float, metavar="EPSILON",
                       help=f"each dataset's DP budget, all jobs together, kept across restarts "
                       f"(default {DEFAULT_EPSILON:g})")
    group.add_argument("--dp-delta", dest="delta", type=float, metavar="DELTA",
                       help="DP delta (default min(1e-5, n^-1.1) for n training rows)")
    group.add_argument("--dp-noise", dest="noise_multiplier", type=float, metavar="SIGMA",
                       help=f"DP-SGD noise multiplier (default {DEFAULT_NOISE_MULTIPLIER:g})")
    group.add_argument("--dp-clip", dest="max_grad_norm", type=float, metavar="C",
                       help=f"DP-SGD per-sample gradient norm bound (default {DEFAULT_MAX_GRAD_NORM:g})")
    group.add_argument("--min-batch", dest="min_batch", type=int, metavar="N",
                       help=f"smallest minibatch a trainer may ask for (default {DEFAULT_MIN_BATCH})")
    group.add_argument("--min-samples", dest="min_samples", type=int, metavar="N",
                       help=f"fewest training rows an update may come from (default {DEFAULT_MIN_SAMPLES})")
    group.add_argument("--secure-aggregation-min-owners", dest="secure_aggregation_min_owners", type=int,
                       metavar="K", help="updates leave only through secure aggregation with at least K "
                       "owners; plain train is refused (default 0: off)")
    group.add_argument("--max-model-elements", dest="max_model_elements", type=int, metavar="N",
                       help=f"largest model a trainer may send, in parameter and buffer elements "
                       f"(default {DEFAULT_MAX_MODEL_ELEMENTS})")
    group.add_argument("--allowed-layers", dest="allowed_layers", metavar="LIST",
                       help="comma-separated layer names a model may use, e.g. Linear,ReLU (default: all "
                       "allowlisted layers)")


def _flag_policy(parser: OneLineParser, args: argparse.Namespace) -> TrainingPolicy:
    """The policy the flags give (for datasets without a policy file)."""
    given = {key: getattr(args, key) for key in POLICY_FLAGS if getattr(args, key) is not None}
    try:
        return policy_from_mapping(given, "the command line")
    except PolicyError as exc:
        parser.error(f"{POLICY_FLAGS.get(exc.key, exc.key)}: {exc.reason}")


def _policies(parser: OneLineParser, args: argparse.Namespace, names: set[str]) -> dict[str, TrainingPolicy]:
    """Each dataset's policy file (``--dataset-policy``), read and checked now."""
    files: dict[str, TrainingPolicy] = {}
    for text in args.dataset_policy:
        try:
            name, path = parse_dataset_spec(text, "policy spec")
        except DatasetError as exc:
            parser.error("--dataset-policy: " + exc.message)
        if name not in names:
            parser.error(f"--dataset-policy {name}: no --dataset of that name")
        if name in files:
            parser.error(f"--dataset-policy {name}: given twice")
        try:
            files[name] = load_policy_file(path)
        except PolicyError as exc:
            parser.error(exc.message)
    return files


def _datasets(parser: OneLineParser, args: argparse.Namespace) -> tuple[DatasetSource, ...]:
    if not 0 <= args.dataset_heldout < 1:
        parser.error(f"--dataset-heldout must be in [0, 1), got {args.dataset_heldout}")
    named = []
    for text in args.dataset:
        try:
            named.append(parse_dataset_spec(text))
        except DatasetError as exc:
            parser.error(exc.message)
    default = _flag_policy(parser, args)
    files = _policies(parser, args, {name for name, _ in named})
    return tuple(
        DatasetSource(
            name, path, args.dataset_label, args.dataset_description, args.dataset_heldout,
            files.get(name, default),
        )
        for name, path in named
    )


def parse(argv: list[str]) -> tuple[NodeSettings, str]:
    """Settings and log level from the command line and ``TESSERA_HOME``."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        node_id = validate_node_id(args.id)
    except ValueError as exc:
        parser.error(str(exc))
    gateway, advertise, fingerprint, tags = _network_args(parser, args)
    token = network_token(
        parser, None, args.network_token_file, os.environ.get(NETWORK_TOKEN_ENV)
    )
    if gateway is not None and token is None:
        parser.error(
            f"joining a network needs its token: set {NETWORK_TOKEN_ENV} or pass "
            "--network-token-file (the gateway's operator has it)"
        )
    home = os.environ.get("TESSERA_HOME")
    state_dir = args.state_dir or (
        Path(home) / "nodes" / node_id if home else default_state_dir(node_id)
    )
    settings = NodeSettings(
        node_id=node_id,
        state_dir=state_dir.expanduser(),
        host=args.host,
        port=args.port,
        insecure=args.insecure,
        max_message_bytes=args.max_message_mib * 1024 * 1024,
        roles=tuple(dict.fromkeys(args.role or ["compute"])),
        tags=tags,
        gateway_url=gateway,
        gateway_cafile=args.gateway_cafile.expanduser() if args.gateway_cafile else None,
        gateway_fingerprint=fingerprint,
        advertise=advertise,
        max_objects=args.max_objects,
        max_bytes=args.max_memory_mib * 1024 * 1024,
        max_connections=args.max_connections_per_principal,
        network_token=token,
        allow_anonymous=bool(args.allow_anonymous),
        trusted_providers=frozenset(args.trust_crypto_provider),
        torch_threads=args.torch_threads,
        datasets=_datasets(parser, args),
    )
    return settings, str(args.log_level)


def _network_args(
    parser: OneLineParser, args: argparse.Namespace
) -> tuple[str | None, str | None, str | None, tuple[str, ...]]:
    """Validated --gateway, --advertise, --gateway-fingerprint and --tag values."""
    try:
        gateway = validate_node_url(args.gateway) if args.gateway else None
        advertise = validate_node_url(args.advertise) if args.advertise else None
    except MalformedMessage as exc:
        parser.error(exc.message.replace("node URL", "URL"))
    if args.gateway_fingerprint and not args.gateway:
        parser.error("--gateway-fingerprint needs --gateway")
    try:
        fingerprint = (
            normalize_fingerprint(args.gateway_fingerprint) if args.gateway_fingerprint else None
        )
        tags = tuple(dict.fromkeys(normalize_tag(tag) for tag in args.tag))
    except ValueError as exc:
        parser.error(str(exc))
    return gateway, advertise, fingerprint, tags


async def run(settings: NodeSettings) -> None:
    """Start the node, print the startup line, serve until SIGINT/SIGTERM."""
    server = NodeServer(settings)
    try:
        await server.start()
    except (StateDirError, UsersFileError, DatasetError, LedgerError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(bind_error(settings.host, settings.port, exc)) from None
    if settings.insecure:
        log.warning("INSECURE: TLS is off; traffic and credentials travel in plaintext")
    if settings.allow_anonymous:
        log.warning("ANONYMOUS: clients without a user token are let in (development only)")
    elif not server.users.names():
        log.warning(
            "no users yet: admit one with 'python -m node users add <name> --id %s'",
            settings.node_id,
        )
    fingerprint = server.fingerprint or "none (insecure)"
    await announce_and_wait(f"node {settings.node_id} listening on {server.url} fingerprint {fingerprint}")
    log.info("shutting down")
    await server.close()


def _quiet_benign_warnings() -> None:
    """Opacus warnings that say nothing to an operator, once per DP-SGD step or charge otherwise.

    The first is its hooks on a first layer whose input needs no gradient
    (ours never does); the second says a large noise multiplier's bound
    could be tighter with more RDP orders (ours is then an upper bound).
    """
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["users"]:
        users_main(argv[1:], os.environ)
        return
    if argv[:1] == ["audit"]:
        audit_main(argv[1:], os.environ)
        return
    settings, log_level = parse(argv)
    _quiet_benign_warnings()
    configure_logging(log_level)
    keep_large_buffers()
    try:
        loops.run(run(settings))
    except CliError as exc:
        fail(PROG, str(exc))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
