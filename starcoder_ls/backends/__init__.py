"""Generation backends behind one interface (``starcoder_ls.types.Backend``).

=====================  ===================================================================
``llamacpp``           a GGUF file in this process (llama-cpp-python); the bundled model
                       when ``model`` is empty
``transformers``       an HF folder or hub id on cpu/cuda/mps; the bundled HF folder when
                       ``model`` is empty
``openai``             any OpenAI-compatible ``/v1/completions`` (vLLM, llama-cpp-python's
                       server, LM Studio)
``starcoder-ls``       the team server (``starcoder-ls serve``), same wire format as openai
``tgi``                text-generation-inference ``/generate``
``ollama``             Ollama ``/api/generate`` in raw mode
``llamacpp-server``    llama.cpp server ``/infill`` (prefix, suffix and other files apart)
``huggingface``        the Hugging Face inference API (TGI-shaped)
``test``               a deterministic fake for tests and benchmarks (``backends.testing``)
=====================  ===================================================================

Each module imports its heavy library (llama_cpp, torch, httpx) only when a backend is built.
"""

from __future__ import annotations

from starcoder_ls.settings import REMOTE_BACKENDS, Settings
from starcoder_ls.types import Backend, BackendError

__all__ = ["LOCAL_BACKENDS", "create_backend", "create_local_backend"]

LOCAL_BACKENDS = ("llamacpp", "transformers")
"""Backends whose model runs on this machine: the language server and the CLI run them in a
supervised worker process (``backends.worker``), so a native crash cannot take them down."""


def create_backend(settings: Settings) -> Backend:
    """Build the backend ``settings`` ask for; raises ``BackendError`` with a message for the
    user when it cannot (missing model file, unknown backend, bad URL). Local models run in a
    worker process."""
    if settings.backend in LOCAL_BACKENDS:
        from starcoder_ls.backends.worker import WorkerBackend

        return WorkerBackend(settings)
    return create_local_backend(settings)


def create_local_backend(settings: Settings) -> Backend:
    """Like ``create_backend``, with a local model loaded into this process (the worker
    itself, the team server, benchmarks)."""
    kind = settings.backend
    if kind == "llamacpp":
        from starcoder_ls.backends.llamacpp import LlamaCppBackend

        llama = LlamaCppBackend(
            gguf_for(settings.model), n_ctx=settings.n_ctx, n_threads=settings.n_threads
        )
        if settings.token_healing:
            llama.prepare_healing()
        return llama
    if kind == "transformers":
        from starcoder_ls.backends.hf import TransformersBackend
        from starcoder_ls.models import BUNDLED_HF

        hf = TransformersBackend(
            settings.model or str(BUNDLED_HF),
            device=settings.device,
            dtype=settings.dtype,
            kernels=settings.kernels,
            quantize=settings.quantize,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
        )
        if settings.token_healing:
            hf.prepare_healing()
        return hf
    if kind in REMOTE_BACKENDS:
        from starcoder_ls.backends.http import HttpBackend

        return HttpBackend(
            kind,
            url=settings.url,
            model=settings.model,
            api_key_env=settings.api_key_env,
            timeout_ms=settings.timeout_ms,
            retries=settings.retries,
            tls_verify=settings.tls_verify,
            ca_bundle=settings.ca_bundle,
            n_ctx=settings.n_ctx,
        )
    if kind == "test":
        from starcoder_ls.backends.testing import TestBackend

        return TestBackend(settings.model)
    raise BackendError(f"unknown backend {kind!r}")


def gguf_for(model: str) -> str:
    """The GGUF file the llamacpp backend loads for a ``model`` setting: the default model when
    empty, a pulled file for a registry name, else the path as given."""
    import logging

    from starcoder_ls.models import default_gguf
    from starcoder_ls.models.hub import HubError, resolve_gguf

    if not model.strip():
        path, note = default_gguf()
        if note:
            logging.getLogger(__name__).warning("%s", note)
        return path
    try:
        return resolve_gguf(model)
    except HubError as exc:
        raise BackendError(str(exc)) from None
