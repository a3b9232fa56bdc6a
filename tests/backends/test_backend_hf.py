"""The transformers backend on the bundled HF folder (CPU): same weights as the bundled GGUF,
KV reuse, stops by id, cancellation, and bad model folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_helpers import special_opening
from starcoder_ls.models import BUNDLED_HF

from starcoder_ls.types import BackendError, CancelToken, GenerationParams, Prompt

GREEDY = GenerationParams(max_tokens=12)


@pytest.fixture(scope="module")
def hf_backend() -> Iterator[Any]:
    from starcoder_ls.backends import create_local_backend as create_backend
    from starcoder_ls.settings import Settings

    backend = create_backend(Settings(backend="transformers", device="cpu", n_threads=1))
    yield backend
    backend.close()


def test_bundled_folder_loads_on_cpu_in_float32(hf_backend: Any) -> None:
    assert (hf_backend.device, hf_backend.dtype) == ("cpu", "float32")
    assert hf_backend.model_id == str(BUNDLED_HF)
    assert hf_backend.context_length == 512


def test_greedy_text_matches_the_gguf_of_the_same_weights(
    hf_backend: Any, gguf_backend: Any, fim: Callable[..., Prompt]
) -> None:
    """The bundled GGUF is a Q8_0 export of these float weights. Q8_0 perturbs logits by far
    less than the margin between the bundled model's top two tokens on these short greedy runs
    (checked when writing this test), so both engines must pick the same tokens: a mismatch
    means one of them builds or continues the prompt differently."""
    for prompt in (
        fim("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"),
        fim("import os\n\n\ndef read_file(path):\n    with open(path) as f:\n"),
    ):
        assert hf_backend.count_tokens(prompt.text) == gguf_backend.count_tokens(prompt.text)
        ours = hf_backend.generate(prompt, GREEDY, CancelToken())
        theirs = gguf_backend.generate(prompt, GREEDY, CancelToken())
        assert ours.text == theirs.text
        assert ours.completion_tokens == theirs.completion_tokens


def test_extending_the_prompt_evaluates_only_the_new_tokens(
    hf_backend: Any, raw: Callable[..., Prompt]
) -> None:
    code = "<fim_prefix>import os\n\n\ndef read_file(path):\n    with open(path) as f:\n"
    first, second = raw(code + "        data"), raw(code + "        data = f.read()")
    first_ids, second_ids = hf_backend.tokenize(first.text), hf_backend.tokenize(second.text)
    assert second_ids[: len(first_ids)] == first_ids  # the premise: a pure extension
    hf_backend.generate(first, GenerationParams(max_tokens=1), CancelToken())
    reused = hf_backend.generate(second, GREEDY, CancelToken())
    assert reused.evaluated_tokens == len(second_ids) - len(first_ids)
    hf_backend.generate(
        raw("<fim_prefix>class Point:\n"), GenerationParams(max_tokens=1), CancelToken()
    )
    cold = hf_backend.generate(second, GREEDY, CancelToken())
    assert cold.evaluated_tokens == len(second_ids) - 1
    assert cold.text == reused.text


def test_family_stop_token_ends_generation_by_id(
    hf_backend: Any, raw: Callable[..., Prompt]
) -> None:
    text, first = special_opening(hf_backend, GREEDY)
    stopped = hf_backend.generate(raw(text, stop=(first,)), GREEDY, CancelToken())
    assert (stopped.text, stopped.completion_tokens, stopped.finish_reason) == ("", 0, "stop")


def test_cancel_stops_generation_between_tokens(
    hf_backend: Any, fim: Callable[..., Prompt], cancel_after: Callable[[int], CancelToken]
) -> None:
    prompt = fim("def add(a, b):\n    ", "\n")
    params = GenerationParams(max_tokens=16)
    full = hf_backend.generate(prompt, params, CancelToken())
    cut = hf_backend.generate(prompt, params, cancel_after(4))
    assert (cut.finish_reason, cut.completion_tokens) == ("cancelled", 2)
    assert full.text.startswith(cut.text)
    assert hf_backend.generate(prompt, params, CancelToken()).text == full.text


def test_bad_model_folder_is_a_backend_error(tmp_path: Path) -> None:
    from starcoder_ls.backends.hf import TransformersBackend

    with pytest.raises(BackendError, match="not a Hugging Face model folder"):
        TransformersBackend(str(tmp_path), device="cpu")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BackendError, match="cannot load"):
        TransformersBackend(str(tmp_path), device="cpu")


def test_bad_adapters_and_gguf_files_are_backend_errors(tmp_path: Path) -> None:
    """A LoRA adapter folder whose config is damaged or whose base is gone, and a file that
    is not GGUF: each a one-line reason, nothing half-loaded."""
    import json

    from starcoder_ls.backends.hf import TransformersBackend

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(BackendError, match="does not name its base model"):
        TransformersBackend(str(adapter), device="cpu")
    gone = tmp_path / "gone"
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(gone)}))
    with pytest.raises(BackendError, match="cannot load the transformers model"):
        TransformersBackend(str(adapter), device="cpu")
    # A real base, but the adapter's weights are missing.
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(BUNDLED_HF), "peft_type": "LORA"})
    )
    with pytest.raises(BackendError, match="cannot apply the adapter"):
        TransformersBackend(str(adapter), device="cpu")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(BackendError, match="is not a GGUF file"):
        TransformersBackend(str(not_gguf), device="cpu")


def test_unavailable_device_is_a_backend_error() -> None:
    import torch

    from starcoder_ls.backends.hf import resolve_device, resolve_dtype

    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(BackendError, match="unknown dtype"):
        resolve_dtype("int3", "cpu")
