"""``python -m node audit``: the operator reads its node's training audit trail.

Every ``train`` asked of the node's datasets (users' and trainer nodes'
jobs alike) is one line of ``audit.jsonl`` in the node's state directory
(:mod:`node.server.fl.audit`): time, dataset, principal, job and round, the
model spec's SHA-256, the training rows, the epsilon charged and left, and
what came of it.  This prints them as a table (``--json``: the lines as
stored), oldest first, optionally for one dataset or principal and only the
last N.  Called by ``node.__main__``, which passes argv and the environment.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Mapping

from peer.cli import OneLineParser, fail, positive_int_arg
from node.server.fl.audit import AUDIT_FILE, AuditEntry, AuditFileError, read_audit
from .users_cli import node_state_dir

__all__ = ["audit_main"]

PROG = "node audit"


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Show a node's training audit trail, e.g. 'python -m node audit --id alice'.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--id", help="the node's id (its default state directory)")
    where.add_argument("--state-dir", type=Path, help="the node's state directory")
    parser.add_argument("--dataset", help="only trainings of this dataset")
    parser.add_argument("--principal", help="only trainings asked by this principal, e.g. user:bob")
    parser.add_argument("--last", type=positive_int_arg, metavar="N", help="only the last N entries")
    parser.add_argument("--json", action="store_true", help="print the entries as stored (JSON lines)")
    return parser


def _row(entry: AuditEntry) -> str:
    epsilon = "-" if entry.epsilon is None else f"{entry.epsilon:.4g}"
    left = "-" if entry.epsilon_remaining is None else f"{entry.epsilon_remaining:.4g}"
    outcome = entry.outcome.value + (f":{entry.reason}" if entry.reason else "")
    return "\t".join([
        entry.time, entry.dataset, entry.principal, entry.job_id or "-", str(entry.round),
        entry.spec_sha256[:16], ("secure" if entry.secure else "plain"), str(entry.samples), epsilon, left, outcome,
    ])


HEADER = "time\tdataset\tprincipal\tjob\tround\tspec\tmode\tsamples\tepsilon\tleft\toutcome"


def audit_main(argv: list[str], env: Mapping[str, str] = os.environ) -> None:
    """Print the audit trail; errors are one line on stderr."""
    parser = _parser()
    args = parser.parse_args(argv)
    path = node_state_dir(parser, args.id, args.state_dir, env) / AUDIT_FILE
    try:
        entries = [
            e for e in read_audit(path)
            if (args.dataset is None or e.dataset == args.dataset)
            and (args.principal is None or e.principal == args.principal)
        ]
    except AuditFileError as exc:
        fail(PROG, str(exc))
    shown = deque(entries, maxlen=args.last) if args.last else entries
    if args.json:
        for entry in shown:
            print(entry.to_json())
        return
    print(HEADER)
    for entry in shown:
        print(_row(entry))
