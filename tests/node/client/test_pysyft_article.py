"""The PySyft 0.2 introduction's two examples, run as written, in one process and against TLS nodes.

The article's code is kept below as text and executed as it stands; only
the imports and the node set-up differ from PySyft (``node.hook_torch()``
for ``sy.TorchHook(torch)``, ``node.VirtualNode("bob")`` or ``node.connect``
for ``sy.VirtualWorker(hook, id="bob")``), plus the one documented
spelling change of the share inspection (``x.shares`` for PySyft's
``x.child.child``).  The article itself is not in the repository: the
examples are reconstructed from issue 14's quotes and PySyft 0.2's README.
Each example prints what the article shows; the tests compare the output.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

import node
from tests.support import NodeProcess, start_node

FIRST_EXAMPLE = """\
x = torch.tensor([1, 2, 3, 4, 5])
y = torch.tensor([1, 1, 1, 1, 1])
x_ptr = x.send(bob)
y_ptr = y.send(bob)
z = x_ptr + y_ptr
print(x_ptr.location)
print(z.get())
"""

SECOND_EXAMPLE = """\
x = torch.tensor([25]).share(bob, alice)
y = torch.tensor([5]).share(bob, alice)
z = x + y
print(z.get())

# each party holds a random-looking share; adding them by hand gives 25 back
bob_share = x.shares["bob"].get()
alice_share = x.shares["alice"].get()
print(bob_share, alice_share)
print(bob_share + alice_share)
"""

SHARE_LINE = re.compile(r"^tensor\(\[(-?\d+)\]\) tensor\(\[(-?\d+)\]\)$")


def run(example: str, **nodes: Any) -> list[str]:
    """Execute the article's text with ``torch`` and the nodes in scope; the lines it printed."""
    node.hook_torch()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "<article>", "exec"), {"torch": torch, **nodes})  # noqa: S102 - our own constant
    return out.getvalue().splitlines()


def check_first(lines: list[str]) -> None:
    assert lines == ["bob", "tensor([2, 3, 4, 5, 6])"]


def check_second(lines: list[str]) -> None:
    assert lines[0] == "tensor([30])"
    match = SHARE_LINE.match(lines[1])
    assert match, lines[1]
    bob_share, alice_share = int(match.group(1)), int(match.group(2))
    assert 25 not in (bob_share, alice_share)  # a share is not the secret (chance 2^-63)
    assert (bob_share + alice_share) % 2**64 == 25  # the ring is Z/2^64
    assert lines[2] == "tensor([25])"


# -- in one process ----------------------------------------------------------


@pytest.fixture
def virtual() -> Iterator[dict[str, node.VirtualNode]]:
    nodes = {"bob": node.VirtualNode("bob"), "alice": node.VirtualNode("alice")}
    yield nodes
    for handle in nodes.values():
        handle.close()


def test_first_example_with_virtual_nodes(virtual: dict[str, node.VirtualNode]) -> None:
    """send, +, location and get on one in-process node: the article's output."""
    check_first(run(FIRST_EXAMPLE, **virtual))


def test_second_example_with_virtual_nodes(virtual: dict[str, node.VirtualNode]) -> None:
    """Sharing between two VirtualNodes needs no crypto provider; the shares add up by hand."""
    lines = run(SECOND_EXAMPLE, **virtual)
    print("\n".join(lines))
    check_second(lines)


def test_a_product_without_a_crypto_provider_names_it(virtual: dict[str, node.VirtualNode]) -> None:
    """The first product of values shared without a provider: CryptoProviderRequired, a SharingError."""
    bob, alice = virtual["bob"], virtual["alice"]
    x = node.share(torch.tensor([25]), bob, alice)
    with pytest.raises(node.CryptoProviderRequired, match="crypto_provider=") as raised:
        x * x
    assert isinstance(raised.value, node.SharingError)
    assert torch.equal((x * 2 - x).get(), torch.tensor([25]))  # public integers need no provider


def test_sharing_mixing_in_process_and_networked_nodes_is_refused(shared_node: NodeProcess) -> None:
    """A VirtualNode and a TLS node cannot be parties together: MixedNetworks before anything is sent."""
    remote = node.connect(shared_node.url, cafile=shared_node.cafile)
    local = node.VirtualNode("local")
    try:
        with pytest.raises(node.MixedNetworks, match=r"in-process nodes \(local\) with networked nodes \(shared\)"):
            node.share(torch.tensor([1]), local, remote)
        with pytest.raises(node.MixedNetworks):
            node.share(torch.tensor([1]), local, node.VirtualNode("other"), crypto_provider=remote)
        data = remote.send(torch.tensor([1]))
        with pytest.raises(node.MixedNetworks):
            data.share(local, node.VirtualNode("other"))
        assert [info.object_id for info in remote.objects()] == [data.object_id]  # nothing else was sent
        assert local.objects() == []
    finally:
        remote.close()
        local.close()


# -- against TLS node processes -------------------------------------------------


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, node.RemoteNode]]:
    tmp: Path = tmp_path_factory.mktemp("article")
    procs = {name: start_node(tmp, name) for name in ("bob", "alice")}
    handles = {name: node.connect(p.url, cafile=p.cafile) for name, p in procs.items()}
    yield handles
    for handle in handles.values():
        handle.close()
    for proc in procs.values():
        proc.stop()
        assert "Traceback" not in proc.stderr(), proc.stderr()


def test_first_example_against_tls_nodes(remote: dict[str, node.RemoteNode]) -> None:
    check_first(run(FIRST_EXAMPLE, **remote))


def test_errors_name_the_node_by_id_not_url(remote: dict[str, node.RemoteNode]) -> None:
    """A failed op on a TLS node: "... on bob: ...", the URL nowhere in the message."""
    bob = remote["bob"]
    product = bob.send(torch.ones(2)) @ bob.send(torch.ones(3))
    with pytest.raises(node.OpFailed, match=r"\) on bob: ") as raised:
        product.get()
    assert "wss://" not in str(raised.value)


def test_second_example_against_tls_nodes(remote: dict[str, node.RemoteNode]) -> None:
    lines = run(SECOND_EXAMPLE, **remote)
    print("\n".join(lines))
    check_second(lines)
    with pytest.raises(node.CryptoProviderRequired, match="crypto_provider="):
        node.share(torch.tensor([2]), remote["bob"], remote["alice"]) @ node.share(
            torch.tensor([3]), remote["bob"], remote["alice"]
        )
