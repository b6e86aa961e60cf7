"""The README demo: a gateway and two nodes on loopback, TLS on, then the quickstart.

Each process gets its own temporary state directory (key and certificate).
Authentication is on, as in any deployment: a fresh network token (in
``TESSERA_NETWORK_TOKEN``, never on a command line) lets the nodes register
at the gateway and accept each other, and each node's operator admits the
user ``scientist`` (``python -m node users add``); the quickstart connects
with that user's token (``TESSERA_TOKEN``) and trusts only the gateway's
certificate.  Everything is stopped at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP = re.compile(r"^(\S+) .*listening on (\S+) fingerprint (\S+)")


def start(args: list[str], env: dict[str, str], started: list[subprocess.Popen[str]]) -> re.Match[str]:
    process = subprocess.Popen(
        [sys.executable, *args, "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )
    started.append(process)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = STARTUP.match(line)
    if not match:
        raise SystemExit(f"demo: could not start {' '.join(args)}: {line!r}")
    print(f"# started process {process.pid}: {line.strip()}", flush=True)
    return match


def run(args: list[str], env: dict[str, str]) -> str:
    """Run a one-shot command (token issuing) and return its stdout."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def credentials(tmp: str, env: dict[str, str]) -> None:
    """A network token for this demo network and a user admitted on both nodes, into ``env``."""
    print("# python -m gateway new-token            -> TESSERA_NETWORK_TOKEN", flush=True)
    env["TESSERA_NETWORK_TOKEN"] = run(["-m", "gateway", "new-token"], env)
    print("# python -m node users add scientist --state-dir <alice>   -> TESSERA_TOKEN", flush=True)
    env["TESSERA_TOKEN"] = run(["-m", "node", "users", "add", "scientist", "--state-dir", f"{tmp}/alice"], env)
    print("# python -m node users add scientist --state-dir <bob> --token-env TESSERA_TOKEN", flush=True)
    run(["-m", "node", "users", "add", "scientist", "--state-dir", f"{tmp}/bob", "--token-env", "TESSERA_TOKEN"], env)


def main() -> int:
    started: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            credentials(tmp, env)
            gateway = start(["-m", "gateway", "--port", "0", "--state-dir", f"{tmp}/gateway"], env, started)
            gateway_url, gateway_cert = gateway.group(2), f"{tmp}/gateway/cert.pem"
            for name in ("alice", "bob"):
                start(["-m", "node", "--id", name, "--port", "0", "--state-dir", f"{tmp}/{name}",
                       "--gateway", gateway_url, "--gateway-cafile", gateway_cert], env, started)
            return subprocess.call(
                [sys.executable, str(ROOT / "examples" / "quickstart.py"),
                 "--gateway", gateway_url, "--cafile", gateway_cert],
                cwd=ROOT, env=env,
            )
        finally:
            for process in reversed(started):
                process.send_signal(signal.SIGTERM)
            for process in started:
                process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
