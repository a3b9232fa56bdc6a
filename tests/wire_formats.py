"""Request fields of the hosted servers the remote backends speak to, from their documentation:
what the dialect tests and the fake servers of the end-to-end tests both check requests against."""

from __future__ import annotations

OLLAMA_FIELDS = {
    "model", "prompt", "suffix", "images", "format", "options", "system", "template",
    "stream", "raw", "keep_alive", "context", "think",
}  # fmt: skip
OLLAMA_OPTIONS = {
    "num_predict", "temperature", "top_p", "top_k", "min_p", "stop", "seed", "num_ctx",
    "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty", "typical_p",
    "num_keep", "num_batch", "num_thread",
}  # fmt: skip
"""Ollama's ``/api/generate`` fields and the model ``options`` it documents."""
