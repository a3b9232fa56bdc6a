"""The answers of the two completion APIs, whole and streamed, in their clients' formats.

* OpenAI completions: ``{id, object: "text_completion", created, model, choices: [{index,
  text, logprobs, finish_reason}], usage}``; streamed as server-sent events of the same object
  with the new text in each choice, a last event per choice with its ``finish_reason``, an
  optional usage event (``stream_options.include_usage``), then ``data: [DONE]``.
* llama.cpp ``/infill``: ``{content, stop, stop_type, tokens_predicted, tokens_evaluated,
  timings, model}``; streamed as events ``{content, stop: false}`` and a last one with
  ``stop: true`` and the counts (llama.cpp sends no ``[DONE]``).
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


class InfillFormat:
    def __init__(self, model: str) -> None:
        self.model = model

    def _final(self, generation: Generation, content: str) -> dict[str, Any]:
        return {
            "content": content,
            "id_slot": 0,
            "stop": True,
            "model": self.model,
            "stop_type": "limit" if generation.finish_reason == "length" else "eos",
            "stopping_word": "",
            "tokens_predicted": generation.completion_tokens,
            "tokens_evaluated": generation.prompt_tokens,
            "timings": {
                "prompt_n": generation.evaluated_tokens,
                "predicted_n": generation.completion_tokens,
                "predicted_ms": round(generation.latency_ms, 3),
            },
        }

    def whole(self, generations: list[Generation]) -> dict[str, Any]:
        return self._final(generations[0], generations[0].text)

    def piece(self, index: int, text: str) -> bytes:
        return sse({"content": text, "stop": False, "id_slot": 0, "index": index})

    def last(self, index: int, generation: Generation) -> bytes:
        return sse(self._final(generation, ""))

    def end(self, generations: list[Generation]) -> bytes:
        return b""
