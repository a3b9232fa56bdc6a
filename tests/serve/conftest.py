"""Fixtures shared by the team server's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.llamacpp import LlamaCppBackend


@pytest.fixture(scope="module")
def reference() -> Iterator[LlamaCppBackend]:
    """The served model in this process: what the server must answer, greedy."""
    backend = LlamaCppBackend(BUNDLED_GGUF)
    yield backend
    backend.close()
