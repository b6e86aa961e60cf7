"""Start a TLS node on loopback in its own process and run the quickstart against it.

The node's key and certificate go to a temporary state directory; the client
verifies the node with that certificate (no verification is skipped).
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
STARTUP = re.compile(r"^node (\S+) listening on (\S+) fingerprint (\S+)")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        state = Path(tmp) / "alice"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        node_process = subprocess.Popen(
            [sys.executable, "-m", "node", "--id", "alice", "--port", "0",
             "--state-dir", str(state), "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )
        try:
            assert node_process.stdout is not None
            line = node_process.stdout.readline()
            match = STARTUP.match(line)
            if not match:
                print(f"demo: the node did not start: {line!r}", file=sys.stderr)
                return 1
            print(f"# started node process {node_process.pid}: {line.strip()}")
            url = match.group(2)
            return subprocess.call(
                [sys.executable, str(ROOT / "examples" / "quickstart.py"),
                 "--url", url, "--cafile", str(state / "cert.pem")],
                cwd=ROOT, env=env,
            )
        finally:
            node_process.send_signal(signal.SIGTERM)
            node_process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
