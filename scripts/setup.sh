#!/usr/bin/env bash
# Create .venv and install starcoder-ls with everything it needs (idempotent and fast on rerun).
#
# torch is pinned to the CPU build 2.13.0 (an unpinned torch pulls several GB of CUDA packages).
# llama-cpp-python compiles from source once (about 5 minutes on 2 cores); pip keeps the built
# wheel in its cache (~/.cache/pip), so later setups reuse it. The install is skipped entirely
# when pyproject.toml and this script have not changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-llama,recipe,serve,kernels,dev}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)" >&2
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.starcoder-ls-setup"
want=$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | sha256sum | cut -c1-16)-$EXTRAS
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  exit 0
fi

echo "setup: installing starcoder-ls[$EXTRAS] into $VENV (first time: ~10 minutes)" >&2
"$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
"$VENV/bin/python" -m pip install --quiet -c scripts/constraints.txt torch
"$VENV/bin/python" -m pip install --quiet -c scripts/constraints.txt -e ".[$EXTRAS]"
echo "$want" > "$stamp"
echo "setup: done" >&2
