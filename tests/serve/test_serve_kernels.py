"""``starcoder-ls serve --kernels on --quantize int4``: the team server's batches decoded with the
Triton kernels (in the CPU interpreter here) answer what the reference path answers alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_helpers import ServeProcess
from starcoder_ls.models import BUNDLED_HF

from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt

PROMPTS = ("import os\nimport ", "def add(a, b):\n    return", "class Point:\n    def __init__(")


@pytest.mark.parametrize(
    "device",
    [
        pytest.param("cpu", marks=pytest.mark.interpreter),
        pytest.param("cuda", marks=pytest.mark.cuda),
    ],
)
def test_batched_requests_with_kernels_equal_the_reference_path(
    device: str, tmp_path: Path
) -> None:
    from starcoder_ls.backends.hf import TransformersBackend
    from starcoder_ls.prompt.templates import get_template

    reference = TransformersBackend(
        str(BUNDLED_HF), device=device, dtype="float32", kernels="off", quantize="int4"
    )
    stop = get_template("starcoder-ls").stop
    want = [
        reference.generate(
            Prompt(text=p, family="starcoder-ls", stop=stop, fim=FimInput(prefix="", suffix="")),
            GenerationParams(max_tokens=10),
            CancelToken(),
        ).text
        for p in PROMPTS
    ]
    reference.close()

    server = ServeProcess(
        [
            *("--backend", "transformers", "--device", device, "--dtype", "float32"),
            *("--threads", "1"),
            *("--kernels", "on", "--quantize", "int4", "--max-batch", "4"),
        ],
        log=tmp_path / "log",
    )
    try:

        def complete(prompt: str) -> str:
            answer = httpx.post(
                f"{server.url}/v1/completions",
                json={"prompt": prompt, "max_tokens": 10, "temperature": 0},
                timeout=120,
            )
            assert answer.status_code == 200, answer.text
            return str(answer.json()["choices"][0]["text"])

        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            got = list(pool.map(complete, PROMPTS))
        assert got == want
        entry = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"][0]
        assert "decode attention: Triton" in entry["kernels"]
        assert "int4 weights: 8 layers" in entry["kernels"]
        assert "(Triton matmul)" in server.output()
    finally:
        server.stop()
