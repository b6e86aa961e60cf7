"""PySyft's first example on a real node: tensors live on alice, the sum is computed there.

    python examples/quickstart.py --url wss://127.0.0.1:8765 --cafile ~/.tessera/nodes/alice/cert.pem

(``bash scripts/demo.sh`` starts a node and runs this for you.)
"""

from __future__ import annotations

import argparse
import sys

import torch

import node


def show(code: str) -> None:
    print(f">>> {code}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the node's wss:// URL")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--cafile", help="the node's cert.pem (or your CA bundle)")
    trust.add_argument("--fingerprint", help="the node's sha256:... fingerprint")
    args = parser.parse_args(argv)

    trust_arg = f'cafile="{args.cafile}"' if args.cafile else f'fingerprint="{args.fingerprint}"'
    show(f'alice = node.connect("{args.url}", {trust_arg})')
    alice = node.connect(args.url, cafile=args.cafile, fingerprint=args.fingerprint)
    show("x = alice.send(torch.tensor([1, 2]))")
    x = alice.send(torch.tensor([1, 2]))
    show("y = alice.send(torch.tensor([3, 4]))")
    y = alice.send(torch.tensor([3, 4]))
    show("z = x + y            # computed on alice")
    z = x + y
    show("print(z.get())")
    print(z.get())
    show("z")
    print(z)
    show("alice.objects()      # what this client holds on alice; no data moves")
    for info in alice.objects():
        print(f"    {info.object_id:#018x} {info.dtype}{list(info.shape)}")
    alice.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
