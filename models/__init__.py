"""Models that ship with starcoder-ls.

``starcoder-ls-tiny`` is trained by ``starcoder-ls recipe bundle`` on the running interpreter's
standard library (see its MODEL_CARD.md) and is the default when no model is configured, so a
fresh install completes code with no network at all.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_NAME = "starcoder-ls-tiny"
BUNDLED_DIR = Path(__file__).resolve().parent / BUNDLED_NAME
BUNDLED_GGUF = BUNDLED_DIR / f"{BUNDLED_NAME}-Q8_0.gguf"
BUNDLED_HF = BUNDLED_DIR / "hf"
