"""PySyft's first example on real nodes, found through the gateway.

    python examples/quickstart.py --gateway wss://127.0.0.1:5000 --cafile ~/.tessera/gateway/cert.pem

Trusts only the gateway's certificate: each node's certificate is pinned
from what the node proved to the gateway.  (``bash scripts/demo.sh`` starts
a gateway and two nodes and runs this for you.)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import node


def show(code: str) -> None:
    print(f">>> {code}", flush=True)


def wait_for_nodes(grid: node.Gateway, wanted: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not wanted <= {n.id for n in grid.nodes() if n.online}:
        if time.monotonic() > deadline:
            raise SystemExit(f"quickstart: nodes {sorted(wanted)} did not register in {timeout:.0f}s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="the gateway's wss:// URL")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--cafile", help="the gateway's cert.pem (or your CA bundle)")
    trust.add_argument("--fingerprint", help="the gateway's sha256:... fingerprint")
    args = parser.parse_args(argv)

    trust_arg = f'cafile="{args.cafile}"' if args.cafile else f'fingerprint="{args.fingerprint}"'
    show(f'grid = node.Gateway("{args.gateway}", {trust_arg})')
    grid = node.Gateway(args.gateway, cafile=args.cafile, fingerprint=args.fingerprint)
    wait_for_nodes(grid, {"alice", "bob"})
    show("grid.nodes()")
    for entry in grid.nodes():
        state = "online" if entry.online else "offline"
        print(f"    {entry.id:<8} {entry.url:<28} {','.join(entry.roles):<12} {state}")
    show('alice = grid.connect("alice")   # pins the certificate alice registered')
    alice = grid.connect("alice")
    show('bob = grid.connect("bob")')
    bob = grid.connect("bob")
    show("x = alice.send(torch.tensor([1, 2]))")
    x = alice.send(torch.tensor([1, 2]))
    show("y = alice.send(torch.tensor([3, 4]))")
    y = alice.send(torch.tensor([3, 4]))
    show("z = x + y            # computed on alice")
    z = x + y
    show("print(z.get())")
    print(z.get())
    show("z.move(bob)          # alice sends it to bob directly, not through this process")
    print(z.move(bob))
    show("print(z.location, z.get())")
    print(z.location, z.get())
    show("alice.objects(), bob.objects()   # what this client holds; no data moves")
    print(f"    alice: {len(alice.objects())} objects, bob: {len(bob.objects())} objects")
    for handle in (alice, bob):
        handle.close()
    grid.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
