#!/usr/bin/env bash
# Create .venv and install Tessera with its test tools. Idempotent.
#
# torch: a plain `pip install torch` pulls a multi-GB CUDA build. We ask for
# the CPU build first (TESSERA_TORCH overrides the requirement, e.g.
# TESSERA_TORCH="torch --index-url https://download.pytorch.org/whl/cpu").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    python -m pip install --quiet ${TESSERA_TORCH:-torch==2.13.0}
fi
python -m pip install --quiet -e ".[dev]"
