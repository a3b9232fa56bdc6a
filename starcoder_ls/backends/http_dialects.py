"""Wire formats of the completion servers: for each, where to POST, the JSON body, and how to
read the answer. Plain functions over dicts, so each format is testable without a network and
adding a server means adding one pair here.

All bodies ask for a single non-streamed answer. Every server here also stops generating when
the client disconnects, which is how a cancelled request is stopped (see ``http.py``).

References for the field names:

* OpenAI-compatible completions (vLLM, llama-cpp-python's server, LM Studio): ``POST
  /v1/completions`` ``{model, prompt, max_tokens, temperature, top_p, stop, stream}`` ->
  ``{choices: [{text, finish_reason}], usage: {prompt_tokens, completion_tokens}}``.
* text-generation-inference: ``POST /generate`` ``{inputs, parameters: {max_new_tokens,
  do_sample, temperature, top_p, stop, return_full_text, details}}`` -> ``{generated_text,
  details: {finish_reason, generated_tokens}}``; TGI rejects ``temperature`` 0 and more stop
  sequences than ``--max-stop-sequences`` (4 by default).
* Ollama: ``POST /api/generate`` ``{model, prompt, raw, stream, options: {num_predict,
  temperature, top_p, stop}}`` -> ``{response, done_reason, prompt_eval_count, eval_count}``.
* llama.cpp server: ``POST /infill`` ``{input_prefix, input_suffix, input_extra: [{filename,
  text}], n_predict, temperature, top_p, stop, stream, cache_prompt}`` -> ``{content,
  stop_type, tokens_evaluated, tokens_predicted, prompt, truncated, timings: {prompt_n}}``.
  The server applies the model's own FIM tokens, so it gets the prompt's parts, not its text;
  ``prompt`` is what it assembled from them. For a model without FIM tokens it answers 501
  ``not_supported_error``, and ``POST /completion`` ``{prompt, ...}`` (same answer) takes a
  left-to-right prompt instead. A prompt longer than its context gets 400
  ``exceed_context_size_error`` with ``n_prompt_tokens`` and ``n_ctx``. ``GET /props`` has the
  context per slot at ``default_generation_settings.n_ctx``; ``POST /tokenize`` ``{content}``
  -> ``{tokens}`` counts with the model's tokenizer.
* Hugging Face inference API: the TGI body at ``/models/<model>``; the answer is a list of
  TGI answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starcoder_ls.backends.base import stop_strings
from starcoder_ls.types import GenerationParams, Prompt

TGI_MAX_STOP = 4
"""TGI's default ``--max-stop-sequences``; the request's own stops come first in the list."""


@dataclass(frozen=True)
class Reply:
    """What a server said, in the backends' terms."""

    text: str
    prompt_tokens: int = 0
    evaluated_tokens: int | None = None
    """Prompt tokens the server actually ran (None: it does not say)."""
    completion_tokens: int = 0
    finish_reason: str = "stop"
    echo: str | None = None
    """The prompt as the server assembled it, where it says (llama.cpp server's ``prompt``)."""
    truncated: bool = False


class ReplyError(ValueError):
    """The answer is JSON but not in the shape this dialect expects."""


@dataclass(frozen=True)
class Dialect:
    name: str
    default_url: str
    """Base URL used when none is configured; ``{model}`` is replaced by the model name."""
    path: str
    """Appended to the base URL unless it already ends with it ("" for full URLs)."""
    body: Callable[[Prompt, GenerationParams, str], dict[str, Any]]
    parse: Callable[[Any], Reply]
    needs_model: bool = False
    api_key_env: str = ""
    """Environment variable read for the key when none is configured."""
    stops_after_text: bool = False
    """The server takes ``stop_after_text`` (starcoder-ls's own): it ignores a line break
    before the first code, so a single-line request on a blank line can send its line-break
    stop. Other servers get whitespace-only stops withheld and generate to the token limit."""

    def endpoint(self, base: str) -> str:
        base = base.rstrip("/")
        if not self.path or base.endswith(self.path):
            return base
        # ".../v1" given for an OpenAI server: the completions route lives under it.
        head, _, tail = self.path.rpartition("/")
        if head and base.endswith(head):
            return f"{base}/{tail}"
        return base + self.path


def _field(data: Any, *keys: str | int) -> Any:
    for key in keys:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            raise ReplyError(f"no {'.'.join(map(str, keys))} in the answer") from None
    return data


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ReplyError(f"the generated text is {type(value).__name__}, not a string")
    return value


# --------------------------------------------------------------------- OpenAI


def openai_body(prompt: Prompt, params: GenerationParams, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model} if model else {}
    body.update(
        prompt=prompt.text,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        stop=list(stop_strings(prompt.stop, params.stop)),
        stream=False,
    )
    return body


def starcoder_ls_body(prompt: Prompt, params: GenerationParams, model: str) -> dict[str, Any]:
    """OpenAI's body, and the team server's own fields where they are set:
    ``stop_after_text``, and ``token_healing`` with ``prefix_end`` (where the code before the
    cursor ends in the prompt, in characters: the server's tokenizer does the healing)."""
    body = openai_body(prompt, params, model)
    if params.stop_after_text:
        body["stop_after_text"] = True
    if params.token_healing and 0 <= prompt.prefix_end <= len(prompt.text):
        body["token_healing"] = True
        body["prefix_end"] = prompt.prefix_end
    return body


def openai_parse(data: Any) -> Reply:
    choice = _field(data, "choices", 0)
    usage = data.get("usage") or {}
    prompt_tokens = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")  # vLLM with prefix caching, OpenAI itself
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Reply(
        text=_text(_field(choice, "text")),
        prompt_tokens=prompt_tokens,
        evaluated_tokens=prompt_tokens - _int(cached) if cached is not None else None,
        completion_tokens=_int(usage.get("completion_tokens")),
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
    )


# ------------------------------------------------------------------------ TGI


def tgi_body(prompt: Prompt, params: GenerationParams, model: str) -> dict[str, Any]:
    sample = params.temperature > 0
    parameters: dict[str, Any] = {
        "max_new_tokens": params.max_tokens,
        "do_sample": sample,
        "stop": list(stop_strings(prompt.stop, params.stop))[:TGI_MAX_STOP],
        "return_full_text": False,
        "details": True,
    }
    if sample:  # TGI rejects temperature 0 and top_p 1: greedy is do_sample false
        parameters["temperature"] = params.temperature
        if 0 < params.top_p < 1:
            parameters["top_p"] = params.top_p
    return {"inputs": prompt.text, "parameters": parameters}


def tgi_parse(data: Any) -> Reply:
    if isinstance(data, list):  # the inference API answers a list, TGI itself one object
        data = _field(data, 0)
    details = data.get("details") if isinstance(data, dict) else None
    details = details if isinstance(details, dict) else {}
    return Reply(
        text=_text(_field(data, "generated_text")),
        completion_tokens=_int(details.get("generated_tokens")),
        finish_reason="length" if details.get("finish_reason") == "length" else "stop",
    )


# --------------------------------------------------------------------- Ollama


def ollama_body(prompt: Prompt, params: GenerationParams, model: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_predict": params.max_tokens,
        "temperature": params.temperature,
        "stop": list(stop_strings(prompt.stop, params.stop)),
    }
    if params.top_p < 1:
        options["top_p"] = params.top_p
    # raw: the prompt already is the model's FIM format; no chat template around it.
    return {"model": model, "prompt": prompt.text, "raw": True, "stream": False, "options": options}


def ollama_parse(data: Any) -> Reply:
    return Reply(
        text=_text(_field(data, "response")),
        prompt_tokens=_int(data.get("prompt_eval_count")),
        evaluated_tokens=_int(data.get("prompt_eval_count"))
        if "prompt_eval_count" in data
        else None,
        completion_tokens=_int(data.get("eval_count")),
        finish_reason="length" if data.get("done_reason") == "length" else "stop",
    )


# ----------------------------------------------------------- llama.cpp server


def infill_body(prompt: Prompt, params: GenerationParams, model: str) -> dict[str, Any]:
    fim = prompt.fim
    body: dict[str, Any] = {
        "input_prefix": fim.prefix,
        "input_suffix": fim.suffix,
        "input_extra": [{"filename": seg.path, "text": seg.text} for seg in fim.extra],
        "n_predict": params.max_tokens,
        "temperature": params.temperature,
        "stop": list(stop_strings(prompt.stop, params.stop)),
        "stream": False,
        "cache_prompt": True,
    }
    if params.top_p < 1:
        body["top_p"] = params.top_p
    return body


def completion_body(prompt: Prompt, params: GenerationParams, model: str) -> dict[str, Any]:
    """llama.cpp server's ``/completion``: the prompt's text as it is (left to right)."""
    body = infill_body(prompt, params, model)
    for key in ("input_prefix", "input_suffix", "input_extra"):
        del body[key]
    return {"prompt": prompt.text, **body}


def infill_parse(data: Any) -> Reply:
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    echo = data.get("prompt")
    return Reply(
        text=_text(_field(data, "content")),
        prompt_tokens=_int(data.get("tokens_evaluated")),
        evaluated_tokens=_int(timings["prompt_n"]) if "prompt_n" in timings else None,
        completion_tokens=_int(data.get("tokens_predicted")),
        finish_reason="length" if data.get("stop_type") == "limit" else "stop",
        echo=echo if isinstance(echo, str) else None,
        truncated=data.get("truncated") is True,
    )


def llamacpp_error(data: Any) -> tuple[str, int, int]:
    """``(type, n_prompt_tokens, n_ctx)`` of a llama.cpp server error answer (0 where absent)."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", 0, 0
    kind = error.get("type")
    return (
        kind if isinstance(kind, str) else "",
        _int(error.get("n_prompt_tokens")),
        _int(error.get("n_ctx")),
    )


# ------------------------------------------------------------------- registry

DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("openai", "http://localhost:8000", "/v1/completions", openai_body, openai_parse),
        Dialect(
            "starcoder-ls",
            "http://localhost:8000",
            "/v1/completions",
            starcoder_ls_body,
            openai_parse,
            stops_after_text=True,
        ),
        Dialect("tgi", "http://localhost:8080", "/generate", tgi_body, tgi_parse),
        Dialect(
            "ollama", "http://localhost:11434", "/api/generate", ollama_body, ollama_parse, True
        ),
        Dialect("llamacpp-server", "http://localhost:8080", "/infill", infill_body, infill_parse),
        Dialect(
            "huggingface",
            "https://api-inference.huggingface.co/models/{model}",
            "",
            tgi_body,
            tgi_parse,
            needs_model=True,
            api_key_env="HF_TOKEN",
        ),
    )
}


def error_message(data: Any) -> str:
    """The human part of an error answer, whatever the server's shape: ``{"error": "..."}``
    (TGI, Ollama, HF), ``{"error": {"message": ...}}`` (OpenAI, llama.cpp), ``{"message"}``
    (vLLM), ``{"detail": ...}`` (FastAPI validation)."""
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            value = data.get(key)
            if isinstance(value, dict):
                return error_message(value)
            if value:
                return str(value)
    return ""
