"""Request bodies of the team server's completion APIs, checked field by field.

Each check that fails raises ``ApiError`` with the HTTP status and a message that names the
field and what it should be, so a client author can fix the request from the message alone.
Fields a route does not know are ignored (OpenAI clients send many), except the few whose
meaning this server cannot honour (``echo``, ``logprobs``, ``best_of``): silently ignoring
those would return something other than what was asked for.

* ``POST /v1/completions``: OpenAI's legacy completions body. With ``suffix`` the server
  builds the fill-in-the-middle prompt itself, in the served model's format.
* ``POST /v1/fim/completions``: Mistral's FIM body (``prompt`` before the cursor, ``suffix``
  after it), which Continue sends.
* ``POST /infill``: llama.cpp server's body (``input_prefix``, ``input_suffix``,
  ``input_extra``, ``prompt`` after the middle sentinel, ``n_predict``, ``n_indent``,
  ``t_max_predict_ms``, ``t_max_prompt_ms``, ``response_fields``).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from starcoder_ls.types import FimInput, GenerationParams, Prompt, Segment

MAX_STOPS = 16
MAX_STOP_CHARS = 256


class ApiError(Exception):
    """A request the server refuses, with the status and a message for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """OpenAI's error shape, which llama.cpp server uses too (with a numeric ``code``)."""
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code or self.status,
            }
        }


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``starcoder-ls serve`` options)."""

    max_tokens: int = 1024
    max_n: int = 4
    default_max_tokens: int = 16
    """OpenAI's default when a request gives no ``max_tokens``."""


@dataclass(frozen=True)
class Served:
    """What the server serves, for building prompts and checking ``model``."""

    name: str
    """The name ``/v1/models`` lists and responses carry."""
    aliases: frozenset[str]
    """Other names a request may use for it (the model's path or hub id)."""
    family: str
    """The prompt family whose FIM format ``suffix`` and ``/infill`` prompts are built in."""
    stop: tuple[str, ...]
    """The family's stop strings, always in force (end of text, file separator, ...)."""


@dataclass(frozen=True)
class CompletionRequest:
    """A checked request: the prompt as the model will see it, and how to generate."""

    prompt: Prompt
    params: GenerationParams
    n: int
    stream: bool
    include_usage: bool = False
    settings: dict[str, Any] | None = None
    """What ``/infill`` reports back as ``generation_settings``."""
    response_fields: tuple[str, ...] = ()
    """llama.cpp's ``response_fields``: the answer keeps only these (all when empty)."""
    after: str = ""
    """``/infill``'s ``prompt``: text after the middle sentinel."""
    dropped: int = 0
    """``/infill``: how many ``input_extra`` chunks were left out to fit the context."""


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "the body is empty; send a JSON object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ApiError(400, "the body's JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {_type(data)}")
    return data


def check_model(body: dict[str, Any], served: Served) -> None:
    model = body.get("model")
    if model is None or model == "":
        return
    if not isinstance(model, str):
        raise ApiError(400, f"model must be a string, not {_type(model)}", param="model")
    if model != served.name and model not in served.aliases:
        raise ApiError(
            404,
            f"model {model!r} is not served here; this server serves {served.name!r} "
            "(GET /v1/models)",
            param="model",
            code="model_not_found",
        )


def openai_request(body: dict[str, Any], served: Served, limits: Limits) -> CompletionRequest:
    check_model(body, served)
    for name in ("echo", "logprobs"):
        if body.get(name):
            raise ApiError(400, f"{name} is not supported by this server", param=name)
    if _integer(body, "best_of", 1, 1, 1) != 1:
        raise ApiError(400, "best_of is not supported by this server", param="best_of")
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise ApiError(
                400,
                "prompt must be a string (or a list of exactly one string); token-id and "
                "batched prompts are not supported",
                param="prompt",
            )
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, f"prompt must be a string, not {_type(prompt)}", param="prompt")
    suffix = _string(body, "suffix")
    if not prompt and not suffix:
        raise ApiError(400, "prompt is empty", param="prompt")
    if suffix is not None:
        fim = FimInput(prefix=prompt, suffix=suffix)
        text = _render(fim, served.family)
        prefix_end = _prefix_end(text, fim, served.family)
    else:
        fim = FimInput(prefix=prompt, suffix="")
        text = prompt
        # A prompt rendered by the client (starcoder-ls's remote backend): it says where the
        # code before the cursor ends in it, inside a PSM prompt.
        prefix_end = _integer(body, "prefix_end", len(text), 0, len(text))
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return CompletionRequest(
        prompt=Prompt(
            text=text, family=served.family, stop=served.stop, fim=fim, prefix_end=prefix_end
        ),
        params=GenerationParams(
            max_tokens=_integer(
                body, "max_tokens", limits.default_max_tokens, 1, limits.max_tokens
            ),
            temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
            top_p=_number(body, "top_p", 1.0, 0.0, 1.0, open_low=True),
            stop=_stops(body, "stop"),
            seed=_seed(body),
            stop_after_text=_boolean(body, "stop_after_text"),
            token_healing=_boolean(body, "token_healing"),
        ),
        n=_integer(body, "n", 1, 1, limits.max_n),
        stream=_boolean(body, "stream"),
        include_usage=include_usage,
    )


def fim_request(body: dict[str, Any], served: Served, limits: Limits) -> CompletionRequest:
    """Mistral's FIM API, ``POST /v1/fim/completions`` (Continue's OpenAI adapter sends FIM
    requests there): ``prompt`` is the code before the cursor, ``suffix`` the code after it,
    and the served family's FIM format puts them together. ``max_tokens`` (or OpenAI's newer
    ``max_completion_tokens``, which Continue may send), ``temperature`` (default 0: greedy),
    ``top_p``, ``stop``, ``random_seed``, ``stream``. ``min_tokens`` is refused: the model's
    end token cannot be held back here."""
    check_model(body, served)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, f"prompt must be a string, not {_type(prompt)}", param="prompt")
    suffix = _string(body, "suffix") or ""
    if not prompt and not suffix:
        raise ApiError(400, "prompt and suffix are both empty", param="prompt")
    if _integer(body, "min_tokens", 0, 0, limits.max_tokens) > 0:
        raise ApiError(400, "min_tokens is not supported by this server", param="min_tokens")
    name = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    fim = FimInput(prefix=prompt, suffix=suffix)
    options = body.get("stream_options")
    return CompletionRequest(
        prompt=Prompt(
            text=_render(fim, served.family), family=served.family, stop=served.stop, fim=fim
        ),
        params=GenerationParams(
            max_tokens=_integer(body, name, limits.default_max_tokens, 1, limits.max_tokens),
            temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
            top_p=_number(body, "top_p", 1.0, 0.0, 1.0, open_low=True),
            stop=_stops(body, "stop"),
            seed=_seed(body, "random_seed"),
        ),
        n=1,
        stream=_boolean(body, "stream"),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def infill_request(body: dict[str, Any], served: Served, limits: Limits) -> CompletionRequest:
    """llama.cpp server's ``/infill``. As a single-model llama-server does, ``model`` is not
    checked (llama.vim sends its ``model_fim`` setting, or an empty string, with every
    request). ``n_predict`` 0 evaluates the prompt into the cache and generates nothing
    (llama.vim warms the cache with such requests)."""
    prefix = _string(body, "input_prefix") or ""
    suffix = _string(body, "input_suffix") or ""
    after = _string(body, "prompt") or ""
    extra = _extra(body.get("input_extra"))
    if not prefix and not suffix and not after and not extra:
        raise ApiError(400, "input_prefix, input_suffix, prompt and input_extra are all empty")
    n_predict = _integer(body, "n_predict", -1, -1, limits.max_tokens)
    n_indent = _integer(body, "n_indent", 0, 0, 10_000)
    predict_ms = _number(body, "t_max_predict_ms", 0.0, 0.0, 3_600_000.0)
    prompt_ms = _number(body, "t_max_prompt_ms", 0.0, 0.0, 3_600_000.0)
    fields = _stops(body, "response_fields", limit=64, empty=True)
    fim = FimInput(prefix=prefix, suffix=suffix, extra=extra)
    if _layout(served.family) == "qwen":
        # llama-server's repository layout for models with <|repo_name|> and <|file_sep|>
        # (Qwen2.5-Coder's training format), with its names for the unnamed repository and
        # current file, so the same model gets the same prompt from either server.
        fim = replace(fim, repo_name="myproject", path="filename")
    params = GenerationParams(
        max_tokens=limits.max_tokens if n_predict == -1 else n_predict,
        # llama.cpp server's defaults, so a client that relies on them gets the same here.
        temperature=_number(body, "temperature", 0.8, 0.0, 2.0),
        top_p=_number(body, "top_p", 0.95, 0.0, 1.0, open_low=True),
        stop=_stops(body, "stop"),
        seed=_seed(body),
        min_indent=n_indent,
        predict_ms=predict_ms,
        # A request that only fills the cache evaluates all of its prompt (llama.vim sends
        # those with t_max_prompt_ms 1, which llama-server ignores).
        prompt_ms=prompt_ms if n_predict != 0 else 0.0,
    )
    stream = _boolean(body, "stream")
    settings = {
        "n_predict": n_predict,
        "n_indent": n_indent,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "stop": list(params.stop),
        "stream": stream,
        "t_max_predict_ms": predict_ms,
        "t_max_prompt_ms": prompt_ms,
    }
    return CompletionRequest(
        prompt=Prompt(
            text=_render(fim, served.family) + after,
            family=served.family,
            stop=served.stop,
            fim=fim,
        ),
        params=params,
        n=1,
        stream=stream,
        settings=settings,
        response_fields=fields,
        after=after,
    )


def fit_extra(req: CompletionRequest, count: Callable[[str], int], n_ctx: int) -> CompletionRequest:
    """``/infill`` with the fewest of the first ``input_extra`` chunks left out that makes the
    prompt fit the context beside the tokens to generate. llama-server likewise keeps the end
    of the extra context; the prefix and suffix are only cut (from the far end of the prefix)
    when even no extra context is not enough."""
    fim = req.prompt.fim
    generate = min(max(req.params.max_tokens, 0), n_ctx // 2)
    room = n_ctx - generate - 1  # a BOS the backend may add
    # A token covers at least one byte, so a prompt of no more bytes than ``room`` fits
    # without tokenizing it here (the backend tokenizes it anyway).
    text_bytes = len(req.prompt.text.encode("utf-8"))
    if not fim.extra or text_bytes <= room or count(req.prompt.text) <= room:
        return req

    def text(drop: int) -> str:
        return _render(replace(fim, extra=fim.extra[drop:]), req.prompt.family) + req.after

    low, high = 1, len(fim.extra)  # the fewest dropped that fit lies in [low, high]
    while low < high:
        mid = (low + high) // 2
        if count(text(mid)) <= room:
            high = mid
        else:
            low = mid + 1
    kept = replace(fim, extra=fim.extra[low:])
    prompt = replace(req.prompt, text=text(low), fim=kept)
    return replace(req, prompt=prompt, dropped=low)


def _layout(family: str) -> str:
    from starcoder_ls.prompt.templates import get_template

    try:
        return get_template(family).layout
    except ValueError:
        return ""


def _seed(body: dict[str, Any], name: str = "seed") -> int:
    """The request's seed; without one (or -1, llama.cpp's "random") a fresh random one, so
    sampled completions differ between requests as clients expect."""
    seed = _integer(body, name, -1, -(2**63), 2**64 - 1)
    return secrets.randbits(32) if seed == -1 else seed % 2**32


def _render(fim: FimInput, family: str) -> str:
    from starcoder_ls.prompt.templates import render

    return render(fim, family)


def _prefix_end(text: str, fim: FimInput, family: str) -> int:
    from starcoder_ls.prompt.templates import PSM, get_template, prefix_end

    return prefix_end(get_template(family), text, fim, PSM)


def _extra(value: Any) -> tuple[Segment, ...]:
    """``input_extra``: other files, ``[{"filename": ..., "text": ...}]``."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ApiError(400, f"input_extra must be a list, not {_type(value)}", param="input_extra")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ApiError(
                400,
                f"input_extra[{i}] must be an object with filename and text",
                param="input_extra",
            )
        name, text = item.get("filename", ""), item.get("text", "")
        if not isinstance(name, str) or not isinstance(text, str):
            raise ApiError(
                400, f"input_extra[{i}].filename and .text must be strings", param="input_extra"
            )
        if text:
            lines = text.count("\n") + 1
            out.append(Segment(kind="extra", path=name, start_line=1, end_line=lines, text=text))
    return tuple(out)


def _type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ApiError(400, f"{name} must be a string, not {_type(value)}", param=name)


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ApiError(400, f"{name} must be true or false, not {_type(value)}", param=name)


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer, not {_type(value)}", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}; got {value}", param=name)
    return value


def _number(
    body: dict[str, Any], name: str, default: float, low: float, high: float, open_low: bool = False
) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ApiError(400, f"{name} must be a number, not {_type(value)}", param=name)
    if value > high or value < low or (open_low and value == low):
        bracket = "(" if open_low else "["
        raise ApiError(
            400, f"{name} must be in {bracket}{low:g}, {high:g}]; got {value}", param=name
        )
    return float(value)


def _stops(
    body: dict[str, Any], name: str, *, limit: int = MAX_STOPS, empty: bool = False
) -> tuple[str, ...]:
    """A string or a list of strings (at most ``limit``); empty ones are dropped unless
    ``empty``."""
    value = body.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ApiError(400, f"{name} must be a string or a list of strings", param=name)
    if len(value) > limit:
        raise ApiError(400, f"{name} has {len(value)} strings; at most {limit}", param=name)
    if any(len(s) > MAX_STOP_CHARS for s in value):
        raise ApiError(
            400, f"{name} strings must be at most {MAX_STOP_CHARS} characters", param=name
        )
    return tuple(s for s in value if s or empty)
