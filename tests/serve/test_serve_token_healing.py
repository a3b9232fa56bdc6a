"""Token healing on the team server: both batched engines heal as the one-at-a-time backend does,
and the remote backend's requests (``token_healing`` and ``prefix_end``) get the answer a local
backend gives, for a left-to-right and a PSM prompt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import ServeProcess
from starcoder_ls.models import BUNDLED_GGUF, BUNDLED_HF

from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.prompt.templates import get_template
from starcoder_ls.serve.engine import Job
from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt

TEMPLATE = get_template("starcoder-ls")
CODE = 'def add(a, b):\n    """Add two numbers."""\n'
HEAL = GenerationParams(max_tokens=12, token_healing=True)


def ltr(code: str) -> Prompt:
    text = "<fim_prefix>" + code
    return Prompt(text, "starcoder-ls", TEMPLATE.stop, FimInput(code, ""), prefix_end=len(text))


def psm(prefix: str, suffix: str) -> Prompt:
    text = f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    return Prompt(
        text, "starcoder-ls", TEMPLATE.stop, FimInput(prefix, suffix), prefix_end=12 + len(prefix)
    )


PROMPTS = (ltr(CODE + "    ret"), ltr(CODE + "    resu"), psm(CODE + "    ret", "\n\nx = 1\n"))


def test_the_batched_llama_cpp_engine_heals_like_the_backend(
    reference: LlamaCppBackend,
) -> None:
    from starcoder_ls.serve.llama_batch import LlamaBatchEngine

    engine = LlamaBatchEngine(LlamaCppBackend(BUNDLED_GGUF, n_threads=1), max_queue=8, max_batch=3)
    try:
        jobs = [Job(p, HEAL) for p in PROMPTS]
        for job in jobs:
            engine.submit(job)
        got = [job.future.result(120) for job in jobs]
    finally:
        engine.close()
    alone = [reference.generate(p, HEAL, CancelToken()) for p in PROMPTS]
    assert got[0].text.startswith("urn")
    for g, a in zip(got, alone, strict=True):
        assert (g.text, g.prompt_tokens) == (a.text, a.prompt_tokens)


def test_the_batched_transformers_engine_heals_like_the_backend() -> None:
    from starcoder_ls.backends.hf import TransformersBackend
    from starcoder_ls.serve.batch import BatchEngine

    hf = TransformersBackend(str(BUNDLED_HF), device="cpu", n_threads=1)
    engine = BatchEngine(hf, max_queue=8, max_batch=3)
    try:
        jobs = [Job(p, HEAL) for p in PROMPTS]
        for job in jobs:
            engine.submit(job)
        got = [job.future.result(120) for job in jobs]
        alone = [hf.generate(p, HEAL, CancelToken()) for p in PROMPTS]
    finally:
        engine.close()
        hf.close()
    assert got[0].text.startswith("urn")
    for g, a in zip(got, alone, strict=True):
        assert (g.text, g.completion_tokens, g.prompt_tokens) == (
            a.text,
            a.completion_tokens,
            a.prompt_tokens,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = ServeProcess(["--backend", "llamacpp", "--max-batch", "1"], log=log)
    yield proc
    proc.stop()


def test_the_remote_backend_asks_the_team_server_to_heal(
    server: ServeProcess, reference: LlamaCppBackend
) -> None:
    from starcoder_ls.backends.http import HttpBackend

    remote = HttpBackend("starcoder-ls", url=server.url)
    try:
        for p in PROMPTS:
            here = reference.generate(p, HEAL, CancelToken())
            there = remote.generate(p, HEAL, CancelToken())
            assert there.text == here.text, p.text
            unhealed = remote.generate(p, GenerationParams(max_tokens=12), CancelToken())
            assert (
                unhealed.text
                == reference.generate(p, GenerationParams(max_tokens=12), CancelToken()).text
            )
        assert remote.generate(PROMPTS[0], HEAL, CancelToken()).text.startswith("urn")
    finally:
        remote.close()


def test_the_server_checks_prefix_end(server: ServeProcess, tmp_path: Path) -> None:
    import httpx

    body: dict[str, Any] = {"prompt": "def f():\n    ret", "token_healing": True, "max_tokens": 4}
    ok = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"].startswith("urn")
    for bad in (-1, 10_000, "3", True):
        answer = httpx.post(
            f"{server.url}/v1/completions", json={**body, "prefix_end": bad}, timeout=30
        )
        assert answer.status_code == 400 and "prefix_end" in answer.text, answer.text
