"""A deterministic backend for tests and benchmarks (``backend: "test"``): no model, no network.

Selected with the ``test`` backend; ``model`` is a spec string of options::

    test                                   defaults
    test:latency_ms=20                     answer after 20 ms (cancellable while waiting)
    test:reply=return%20a%20%2B%20b        always answer "return a + b"
    test:latency_ms=5&reply=x&ctx=4096     options joined with "&"

Option values are percent-decoded (``%20`` space, ``%0A`` newline, ``%26`` "&"); the ``test:``
prefix is optional. Options:

``latency_ms``
    Fixed time each generation takes (default 0). A cancellation ends the wait at once and the
    generation returns with ``finish_reason="cancelled"``.
``reply``
    The text every generation returns.
``error``
    Every generation raises ``BackendError`` with this message (a backend that is down).
``error_every``
    With ``error``: only every N-th generation fails (a flapping backend: ``error_every=2``
    alternates failure and success).
``ctx``
    ``context_length`` in tokens (default 2048).
``pick``
    A regular expression searched in the prompt: the reply is its last match (group 1 when the
    pattern has a group), or nothing when it does not match. A stand-in for a model that uses
    its context: ``pick=def%20(apply_%5Cw%2B)`` answers with a function name only when the
    prompt shows its definition.
``log``
    A file to which each generation appends one JSON line (``call``, ``finish_reason``,
    ``latency_ms``: the generation's own time, the wait included and the log write not,
    ``prompt_chars``, ``prefix_tail``, ``segments``: [kind, path] of each prompt segment), so tests and benchmarks of a server in another process
    can count and inspect the backend calls it made.

Without ``reply`` the answer depends on the prompt in one simple way: if the cursor's line is
blank so far (the prefix ends with a newline and optional indentation) the reply is ``pass``,
otherwise it is ``None``. So ``def f():\\n    |`` completes to ``pass`` and ``x = |`` to
``None``. Stop strings of the request and the family cut the reply like a real model's output.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from pathlib import Path
from urllib.parse import unquote

from starcoder_ls.backends.base import Stopwatch, cut_at_stop, estimate_tokens, stop_strings
from starcoder_ls.types import BackendError, CancelToken, Generation, GenerationParams, Prompt

_OPTIONS = ("latency_ms", "reply", "error", "error_every", "ctx", "log", "pick")


class TestBackend:
    """Same prompt, same text; counts what it served so tests can assert on backend calls."""

    __test__ = False  # not a pytest test class despite its name

    name = "test"

    def __init__(self, spec: str = "") -> None:
        options = parse_spec(spec)
        self.model_id = "test:" + _body(spec) if _body(spec) else "test"
        self.latency_ms = _number(options, "latency_ms", 0.0)
        self.reply: str | None = options.get("reply")
        try:
            self.pick = re.compile(options["pick"]) if "pick" in options else None
        except re.error as exc:
            raise BackendError(f"test backend: pick is not a regular expression: {exc}") from None
        self.error: str | None = options.get("error")
        self.error_every = max(1, int(_number(options, "error_every", 1)))
        self.context_length = int(_number(options, "ctx", 2048))
        self.log_path = Path(options["log"]).expanduser() if options.get("log") else None
        self.calls = 0
        """Generations started (cancelled ones included)."""
        self.cancelled = 0
        self.prompts: deque[Prompt] = deque(maxlen=1000)
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def generate(self, prompt: Prompt, params: GenerationParams, cancel: CancelToken) -> Generation:
        watch = Stopwatch()
        with self._lock:
            self.calls += 1
            call = self.calls
            self.prompts.append(prompt)
        if self.latency_ms > 0:
            cancelled = cancel.wait(self.latency_ms / 1000.0)
        else:
            cancelled = cancel.cancelled
        if cancelled:
            with self._lock:
                self.cancelled += 1
            ms = watch.ms()
            self._log(call, prompt, "cancelled", ms)
            return Generation(text="", latency_ms=ms, finish_reason="cancelled")
        if self.error is not None and call % self.error_every == 0:
            self._log(call, prompt, "error", watch.ms())
            raise BackendError(self.error)
        if self.pick is not None:
            found = list(self.pick.finditer(prompt.text))
            reply = (found[-1].group(1 if self.pick.groups else 0)) if found else ""
        else:
            reply = self.reply if self.reply is not None else default_reply(prompt)
        text, _ = cut_at_stop(
            reply,
            stop_strings(prompt.stop, params.stop),
        )
        tokens = self.count_tokens(prompt.text)
        ms = watch.ms()
        self._log(call, prompt, "stop", ms)
        return Generation(
            text=text,
            prompt_tokens=tokens,
            evaluated_tokens=tokens,
            completion_tokens=estimate_tokens(text),
            latency_ms=ms,
            finish_reason="stop",
        )

    def _log(self, call: int, prompt: Prompt, finish_reason: str, latency_ms: float) -> None:
        if self.log_path is None:
            return
        record = {
            "call": call,
            "finish_reason": finish_reason,
            "latency_ms": round(latency_ms, 3),
            "prompt_chars": len(prompt.text),
            "prefix_tail": prompt.fim.prefix[-80:],
            "segments": [[seg.kind, seg.path] for seg in prompt.segments],
        }
        with self._lock, self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        pass


def default_reply(prompt: Prompt) -> str:
    """``pass`` on a line that is blank up to the cursor, else ``None`` (see the module doc)."""
    prefix = prompt.fim.prefix if prompt.fim.prefix or prompt.fim.suffix else prompt.text
    line = prefix.rsplit("\n", 1)[-1]
    return "pass" if not line.strip() else "None"


def parse_spec(spec: str) -> dict[str, str]:
    """``test:a=1&b=2`` -> {"a": "1", "b": "2"}; unknown options are an error, not ignored, so a
    typo in a test does not silently test something else."""
    options: dict[str, str] = {}
    for part in filter(None, _body(spec).split("&")):
        key, sep, value = part.partition("=")
        if not sep or key not in _OPTIONS:
            raise BackendError(
                f"test backend: bad option {part!r} in {spec!r}; expected KEY=VALUE with KEY one "
                f"of {', '.join(_OPTIONS)}"
            )
        options[key] = unquote(value)
    return options


def _body(spec: str) -> str:
    if spec == "test":
        return ""
    return spec[len("test:") :] if spec.startswith("test:") else spec


def _number(options: dict[str, str], key: str, default: float) -> float:
    if key not in options:
        return default
    try:
        value = float(options[key])
    except ValueError:
        raise BackendError(f"test backend: {key} must be a number, got {options[key]!r}") from None
    if value < 0:
        raise BackendError(f"test backend: {key} must not be negative, got {options[key]!r}")
    return value
