#!/usr/bin/env bash
# Set up, start a TLS node on loopback, and run examples/quickstart.py against it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/demo.py "$@"
