"""The status page rendered by headless Chromium: nodes in the DOM, live refresh, screenshot."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from peer.security.identity import Identity, ensure_identity
from protocol.records import DatasetSummary, Role
from protocol.messages import RegisterReply, RegisterRequest
from tests.gateway.gateway_wire import Wire, record_for
from tests.support import ROOT, GatewayProcess, start_gateway

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "artifacts" / "gateway-status.png"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian packages chromium, chromium-driver)"
)

NODES: dict[str, dict[str, Any]] = {
    "alice": dict(
        url="wss://10.0.0.11:8765", roles=(Role.DATA_OWNER, Role.COMPUTE), tags=("#hospital",),
        datasets=(
            DatasetSummary("wdbc", ("#breast_cancer", "#tabular"), "Wisconsin breast cancer", (569, 30), 569),
            DatasetSummary("mri-2024", ("#imaging",), "Brain MRI slices", (1200, 1, 128, 128), 1200),
        ),
    ),
    "bob": dict(
        url="wss://10.0.0.12:8765", roles=(Role.DATA_OWNER,), tags=("#bank",),
        datasets=(DatasetSummary("loans", ("#credit",), "Loan outcomes", (50000, 12), 50000),),
    ),
    "charlie": dict(url="wss://10.0.0.13:8765", roles=(Role.CRYPTO_PROVIDER,)),
    "trainer-1": dict(url="wss://10.0.0.20:8765", roles=(Role.TRAINER, Role.COMPUTE)),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway of its own, so the page shows exactly the nodes registered here."""
    proc = start_gateway(tmp_path_factory.mktemp("status-gateway"))
    yield proc
    assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    root = tmp_path_factory.mktemp("status-identities")
    return {node_id: ensure_identity(root / node_id, node_id) for node_id in NODES}


@pytest.fixture
async def populated(
    gateway: GatewayProcess, identities: dict[str, Identity]
) -> AsyncIterator[GatewayProcess]:
    """NODES registered; charlie's connection dropped, so it shows offline."""
    wires = []
    for node_id, fields in NODES.items():
        identity = identities[node_id]
        wire = await Wire.open(gateway, identity, node_id)
        reply = await wire.request(RegisterRequest(wire.rid(), record_for(identity, node_id, **fields)))
        assert isinstance(reply, RegisterReply), reply
        wires.append(wire)
    await wires[2].close()
    yield gateway
    for wire in wires:
        await wire.close()


def spki_pin(cert_path: Path) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's SPKI list wants."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chromium(gateway: GatewayProcess, profile: Path, *extra: str) -> str:
    # --ignore-certificate-errors-spki-list pins the gateway's own public key: Chromium
    # accepts the self-signed certificate only if it carries exactly that key, so this is
    # certificate pinning, not switching verification off.
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki_pin(gateway.cafile)}",
        "--virtual-time-budget=3000", *extra, f"{gateway.http_url}/",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


async def test_rendered_dom_lists_the_registered_nodes(populated: GatewayProcess, tmp_path: Path) -> None:
    """Chromium's DOM holds a row per registered node, its state, and the script has refreshed it."""
    dom = await asyncio.to_thread(chromium, populated, tmp_path / "profile", "--dump-dom")
    rows = dict(re.findall(r'<tr class="(?:online|offline)" data-node-id="([\w-]+)">(.*?)</tr>', dom, re.S))
    assert sorted(rows) == sorted(NODES)
    assert ">offline<" in rows["charlie"] and ">online<" in rows["alice"]
    assert "#breast_cancer" in rows["alice"] and "wss://10.0.0.12:8765" in rows["bob"]
    refreshes = re.search(r'data-refreshes="(\d+)"', dom)
    assert refreshes is not None and int(refreshes.group(1)) >= 1, "the page never re-fetched /nodes.json"


async def test_screenshot_is_saved(populated: GatewayProcess, tmp_path: Path) -> None:
    """A 1200x700 screenshot of the page is saved to artifacts/gateway-status.png."""
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    await asyncio.to_thread(
        chromium, populated, tmp_path / "profile", f"--screenshot={SCREENSHOT}", "--window-size=1200,700"
    )
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
