"""``python -m node users add|revoke|list``: the operator admits and revokes users.

A running node picks the change up by itself (revoked users' connections
are closed within a second).  ``add`` prints the new token once, on stdout
alone so scripts can capture it; ``--token-env VAR`` admits an existing
token instead (one person, one token, several nodes).  Called by
``node.__main__``, which passes argv and the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from peer.cli import OneLineParser, fail
from .server.users import UserDirectory, UsersFileError
from .settings import default_state_dir, validate_node_id
from peer.security.tokens import USER_NAME_PATTERN, new_user_token, parse_user_token

__all__ = ["users_main", "node_state_dir"]

PROG = "node users"


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Admit, revoke and list a node's users, e.g. "
        "'python -m node users add bob --id alice'.",
    )
    node = OneLineParser(add_help=False)
    where = node.add_mutually_exclusive_group(required=True)
    where.add_argument("--id", help="the node's id (its default state directory)")
    where.add_argument("--state-dir", type=Path, help="the node's state directory")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add = commands.add_parser("add", parents=[node], help="admit a user and print its token")
    add.add_argument("name", help="user name: 1-32 lowercase letters, digits, '_' or '-'")
    add.add_argument(
        "--token-env", metavar="VAR",
        help="admit the existing token held in this environment variable instead of a new one",
    )
    revoke = commands.add_parser(
        "revoke", parents=[node], help="revoke a user (live connections are closed)"
    )
    revoke.add_argument("name")
    commands.add_parser("list", parents=[node], help="list admitted users")
    return parser


def node_state_dir(parser: OneLineParser, node_id: str | None, state_dir: Path | None,
                   env: Mapping[str, str]) -> Path:
    """A node's state directory from ``--state-dir``, or from ``--id`` and ``TESSERA_HOME``."""
    if state_dir is not None:
        return state_dir.expanduser()
    assert node_id is not None  # the mutually exclusive group is required
    try:
        valid = validate_node_id(node_id)
    except ValueError as exc:
        parser.error(str(exc))
    home = env.get("TESSERA_HOME")
    return Path(home) / "nodes" / valid if home else default_state_dir(valid)


def users_main(argv: list[str], env: Mapping[str, str] = os.environ) -> None:
    """Run one users command; errors are one line on stderr."""
    parser = _parser()
    args = parser.parse_args(argv)
    directory = UserDirectory(node_state_dir(parser, args.id, args.state_dir, env))
    try:
        if args.command == "add":
            _add(parser, directory, args.name, args.token_env, env)
        elif args.command == "revoke":
            if not directory.revoke(args.name):
                fail(PROG, f"no user {args.name!r} on this node")
            print(f"revoked {args.name}")
        else:
            for entry in directory.entries():
                print(f"{entry.name}\tadded {entry.added}")
    except UsersFileError as exc:
        fail(PROG, str(exc))


def _add(parser: OneLineParser, directory: UserDirectory, name: str, token_env: str | None,
         env: Mapping[str, str]) -> None:
    if not USER_NAME_PATTERN.fullmatch(name):
        parser.error(
            f"invalid user name {name[:40]!r}: use 1-32 lowercase letters, digits, '_' or '-'"
        )
    if token_env is None:
        token = new_user_token(name)
        directory.add(token)
        print(token.text)
        return
    text = env.get(token_env)
    if not text:
        parser.error(f"environment variable {token_env} is not set")
    try:
        token = parse_user_token(text)
    except ValueError as exc:
        parser.error(f"{token_env}: {exc}")
    if token.user != name:
        parser.error(f"the token in {token_env} is for user {token.user!r}, not {name!r}")
    directory.add(token)
    print(f"admitted {name}")
