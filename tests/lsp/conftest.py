"""End-to-end fixtures: the real ``starcoder-ls`` process over stdio, driven by pytest-lsp."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

STATE_DIR = Path(os.environ.get("PYTEST_LSP_STATE", "/tmp")) / f"starcoder-ls-e2e-{os.getpid()}"


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "starcoder_ls", "--log-level", "WARNING"],
        server_env={
            **os.environ,
            "STARCODER_LS_STATE_DIR": str(STATE_DIR),
            "XDG_CACHE_HOME": str(STATE_DIR / "cache"),  # the persisted workspace index
        },
    ),
)
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def backend_log(tmp_path: Path) -> Path:
    return tmp_path / "backend.jsonl"
