"""The data scientist's side of the LAN demo: discover nodes, compute, move.

    python examples/lan/client.py --gateway wss://10.0.0.1:5000 --gateway-fingerprint sha256:...

Trusts only the gateway (by fingerprint or CA file); every node's
certificate is pinned from what it proved to the gateway at registration.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import node


def wait_for(grid: node.Gateway, wanted: set[str], timeout: float) -> list[node.GridNode]:
    """Poll the gateway until the wanted nodes are online."""
    deadline = time.monotonic() + timeout
    while True:
        online = [n for n in grid.nodes() if n.online]
        if wanted <= {n.id for n in online} or time.monotonic() > deadline:
            return online
        time.sleep(0.2)


def open_gateway(args: argparse.Namespace, attempts: int = 3) -> node.Gateway:
    """Connect to the gateway, retrying transient failures as a LAN client should."""
    for attempt in range(1, attempts + 1):
        try:
            return node.Gateway(
                args.gateway, fingerprint=args.gateway_fingerprint, cafile=args.gateway_cafile
            )
        except node.NodeUnavailable as exc:
            if attempt == attempts:
                raise
            print(f"gateway not reachable yet ({exc}); retrying", file=sys.stderr)
            time.sleep(1.0)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="the gateway's wss:// URL")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--gateway-fingerprint", help="the gateway's sha256:... fingerprint")
    trust.add_argument("--gateway-cafile", help="the gateway's cert.pem")
    parser.add_argument("--source", default="alice")
    parser.add_argument("--destination", default="bob")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the nodes")
    args = parser.parse_args(argv)

    grid = open_gateway(args)
    online = wait_for(grid, {args.source, args.destination}, args.wait)
    for entry in online:
        print(f"found {entry.id} at {entry.url} roles={','.join(entry.roles)}")
    alice = grid.connect(args.source)
    bob = grid.connect(args.destination)
    x = alice.send(torch.tensor([1, 2]))
    y = alice.send(torch.tensor([3, 4]))
    z = x + y
    print(f"z = x + y on {z.location}: {z.get()}")
    z.move(bob)
    print(f"after z.move({args.destination}): z lives on {z.location}: {z.get()}")
    print(f"{args.source} now holds {len(alice.objects())} objects, {args.destination} holds {len(bob.objects())}")
    alice.close()
    bob.close()
    grid.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
