"""The answers of the completion APIs, whole and streamed, in their clients' formats.

* OpenAI completions: ``{id, object: "text_completion", created, model, choices: [{index,
  text, logprobs, finish_reason}], usage}``; streamed as server-sent events of the same object
  with the new text in each choice, a last event per choice with its ``finish_reason``, an
  optional usage event (``stream_options.include_usage``), then ``data: [DONE]``.
* Mistral's FIM API (``/v1/fim/completions``): the same as a chat completion, ``message`` and
  streamed ``delta`` in place of ``text`` (:class:`ChatFormat`).
* llama.cpp ``/infill``: llama-server's whole answer (``content``, ``stop_type`` with
  ``stopping_word``, ``tokens_predicted``, ``tokens_evaluated``, ``tokens_cached``,
  ``truncated``, ``timings`` with per-second rates, ``generation_settings``, ...), cut down to
  ``response_fields`` when the request names some; streamed as events ``{content, stop:
  false}`` and a last one with ``stop: true`` and the rest (llama.cpp sends no ``[DONE]``).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Protocol

from starcoder_ls.types import Generation


def sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _finish(generation: Generation) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


class Format(Protocol):
    def whole(self, generations: list[Generation]) -> dict[str, Any]: ...

    def piece(self, index: int, text: str) -> bytes: ...

    def last(self, index: int, generation: Generation) -> bytes: ...

    def end(self, generations: list[Generation]) -> bytes: ...


class OpenAIFormat:
    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = "cmpl-" + secrets.token_hex(12)
        self.created = int(time.time())

    def _object(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    @staticmethod
    def usage(generations: list[Generation]) -> dict[str, int]:
        # n choices share one prompt: it counts once, as OpenAI counts it.
        prompt = max((g.prompt_tokens for g in generations), default=0)
        completion = sum(g.completion_tokens for g in generations)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def whole(self, generations: list[Generation]) -> dict[str, Any]:
        body = self._object(
            [
                {"index": i, "text": g.text, "logprobs": None, "finish_reason": _finish(g)}
                for i, g in enumerate(generations)
            ]
        )
        body["usage"] = self.usage(generations)
        return body

    def piece(self, index: int, text: str) -> bytes:
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": None}
        return sse(self._object([choice]))

    def last(self, index: int, generation: Generation) -> bytes:
        choice = {
            "index": index,
            "text": "",
            "logprobs": None,
            "finish_reason": _finish(generation),
        }
        return sse(self._object([choice]))

    def end(self, generations: list[Generation]) -> bytes:
        tail = b""
        if self.include_usage:
            body = self._object([])
            body["usage"] = self.usage(generations)
            tail = sse(body)
        return tail + b"data: [DONE]\n\n"


class ChatFormat(OpenAIFormat):
    """Mistral's FIM answer, shaped as a chat completion: ``{id, object: "chat.completion",
    created, model, choices: [{index, message: {role: "assistant", content}, finish_reason}],
    usage}``; streamed as ``chat.completion.chunk`` events whose choices carry a ``delta``
    (the role in the first), then ``data: [DONE]``."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__(model, include_usage)
        self._started: set[int] = set()

    def _object(
        self, choices: list[dict[str, Any]], kind: str = "chat.completion"
    ) -> dict[str, Any]:
        body = super()._object(choices)
        body["object"] = kind
        return body

    def whole(self, generations: list[Generation]) -> dict[str, Any]:
        body = self._object(
            [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": g.text},
                    "finish_reason": _finish(g),
                }
                for i, g in enumerate(generations)
            ]
        )
        body["usage"] = self.usage(generations)
        return body

    def _delta(self, index: int, text: str) -> dict[str, Any]:
        delta: dict[str, Any] = {"content": text}
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", **delta}
        return delta

    def piece(self, index: int, text: str) -> bytes:
        choice = {"index": index, "delta": self._delta(index, text), "finish_reason": None}
        return sse(self._object([choice], "chat.completion.chunk"))

    def last(self, index: int, generation: Generation) -> bytes:
        choice = {
            "index": index,
            "delta": self._delta(index, ""),
            "finish_reason": _finish(generation),
        }
        return sse(self._object([choice], "chat.completion.chunk"))

    def end(self, generations: list[Generation]) -> bytes:
        tail = b""
        if self.include_usage:
            body = self._object([], "chat.completion.chunk")
            body["usage"] = self.usage(generations)
            tail = sse(body)
        return tail + b"data: [DONE]\n\n"


class InfillFormat:
    """llama.cpp server's answer to ``/infill``, field by field as its server README and
    ``server_task_result_cmpl_final::to_json_non_oaicompat`` give it. ``response_fields``
    keeps only the fields named, a ``a/b`` path lifted to the top under that name, as
    llama-server does (llama.vim asks for ``timings/prompt_ms`` and the like)."""

    def __init__(
        self,
        model: str,
        *,
        prompt: str = "",
        settings: dict[str, Any] | None = None,
        response_fields: tuple[str, ...] = (),
        dropped: int = 0,
    ) -> None:
        self.model = model
        self.dropped = dropped
        """``input_extra`` chunks left out to fit the context: reported as ``truncated``."""
        self.prompt = prompt
        self.settings = settings or {}
        self.response_fields = response_fields

    def _final(self, generation: Generation, content: str) -> dict[str, Any]:
        kind = generation.stop_type or ("limit" if generation.finish_reason == "length" else "eos")
        # llama-server counts the end token it sampled among the predicted ones.
        predicted = generation.completion_tokens + (1 if kind == "eos" else 0)
        evaluated = generation.evaluated_tokens
        body = {
            "index": 0,
            "content": content,
            "tokens": [],
            "id_slot": 0,
            "stop": True,
            "model": self.model,
            "tokens_predicted": predicted,
            "tokens_evaluated": generation.prompt_tokens,
            "generation_settings": {**self.settings, "model": self.model},
            "prompt": self.prompt,
            "has_new_line": "\n" in generation.text,
            "truncated": generation.truncated or self.dropped > 0,
            "stop_type": kind,
            "stopping_word": generation.stopping_word,
            "tokens_cached": max(0, generation.prompt_tokens - evaluated),
            "timings": {
                "cache_n": max(0, generation.prompt_tokens - evaluated),
                **_rate("prompt", evaluated, generation.prompt_ms),
                **_rate("predicted", predicted, generation.predicted_ms),
            },
        }
        return pick(body, self.response_fields)

    def whole(self, generations: list[Generation]) -> dict[str, Any]:
        return self._final(generations[0], generations[0].text)

    def piece(self, index: int, text: str) -> bytes:
        return sse({"index": index, "content": text, "tokens": [], "stop": False, "id_slot": 0})

    def last(self, index: int, generation: Generation) -> bytes:
        return sse(self._final(generation, ""))

    def end(self, generations: list[Generation]) -> bytes:
        return b""


def _rate(name: str, n: int, ms: float) -> dict[str, Any]:
    """llama-server's timing block for ``prompt`` or ``predicted``: count, time, per token and
    per second (0 where nothing was timed)."""
    return {
        f"{name}_n": n,
        f"{name}_ms": round(ms, 3),
        f"{name}_per_token_ms": round(ms / n, 3) if n else 0.0,
        f"{name}_per_second": round(1000.0 * n / ms, 3) if ms > 0 else 0.0,
    }


def pick(body: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """llama-server's ``response_fields``: only the fields named (all when none are), nested
    ones by ``a/b`` path under that path as their name; a path that leads nowhere is left
    out."""
    if not paths:
        return body
    out: dict[str, Any] = {}
    for path in paths:
        value: Any = body
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            out[path] = value
    return out
