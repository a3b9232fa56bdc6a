"""Opening a GGUF file in llama.cpp, with the reason when it cannot be.

llama-cpp-python raises a bare ``ValueError`` when llama.cpp refuses a file and drops llama.cpp's
log, which says why. ``load_gguf`` captures that log and raises ``GGUFError`` with the reason;
``check_gguf_file`` rejects a missing or non-GGUF file before llama.cpp sees it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.types import UserError

if TYPE_CHECKING:
    from llama_cpp import Llama


class GGUFError(UserError):
    """A GGUF file is missing, is not GGUF, or llama.cpp cannot load it (with its reason)."""


GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: str | Path) -> Path:
    """Reject a missing or non-GGUF file before llama.cpp does, with a message that says which."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"GGUF file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
            "convert a Hugging Face folder with `starcoder-ls recipe export --gguf-out`"
        )
    return path


class LlamaLog:
    """What llama.cpp logged: llama-cpp-python throws its reasons away when not verbose."""

    ERROR = 4  # ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
    CONT = 5

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def add(self, level: int, text: str) -> None:
        if level == self.CONT and self.lines:
            level = self.lines[-1][0]  # a continuation keeps the level of the line it extends
        self.lines.append((level, text))

    def reason(self) -> str:
        """The error lines, which say why a load or a quantization failed."""
        text = "".join(t for level, t in self.lines if level == self.ERROR)
        return " ".join(text.split())


@contextlib.contextmanager
def llama_log_capture(*, forward: bool = False) -> Iterator[LlamaLog]:
    """Route llama.cpp's log into a ``LlamaLog`` (and on to llama-cpp-python's when ``forward``)."""
    import ctypes

    from starcoder_ls.backends.cpu_select import import_llama_cpp

    llama_cpp = import_llama_cpp()
    from llama_cpp import _logger

    log = LlamaLog()

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.add(level, text.decode("utf-8", "replace"))
        if forward:
            _logger.llama_log_callback(level, text, user_data)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield log
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def load_gguf(path: str | Path, **kwargs: Any) -> Llama:
    """Open a GGUF in llama.cpp (``verbose=False`` unless given), with a ``GGUFError`` that
    says why when it cannot: llama-cpp-python itself only raises a bare ``ValueError``."""
    path = check_gguf_file(path)
    from starcoder_ls.backends.cpu_select import import_llama_cpp

    llama_cpp = import_llama_cpp()

    kwargs.setdefault("verbose", False)
    with llama_log_capture(forward=bool(kwargs["verbose"])) as log:
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        except ValueError as exc:
            reason = log.reason() or str(exc)
            raise GGUFError(f"llama.cpp cannot load {path}: {reason}") from exc
