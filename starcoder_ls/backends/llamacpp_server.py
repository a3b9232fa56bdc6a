"""What the client learns about a llama.cpp server (``llama-server``) it sends ``/infill`` to,
and how it makes each request fit that server. Pure logic over what the server said; the HTTP
calls are the backend's (``http.py``).

llama-server assembles the FIM prompt itself from ``input_prefix``, ``input_suffix`` and
``input_extra`` (``format_prompt_infill`` in its source), and refuses a prompt of ``n_ctx``
tokens or more with 400 ``exceed_context_size_error``. The client has no tokenizer for the
server's model, so it counts with the byte estimate and learns how far off that is:

* the context per slot comes from ``GET /props`` (``default_generation_settings.n_ctx``);
* the estimate's rate is learned from each answer's ``tokens_evaluated`` and from the exact
  count in a refusal; the highest of the recent rates is used, and the context the prompt
  builder sees is the server's divided by it;
* a prompt that still does not fit is cut (other files first, then the far ends of the prefix
  and suffix) and sent again once, sized by the exact count in the server's refusal.

llama-server keeps only the last ``n_ctx - n_batch - 2 * n_predict`` tokens of the other files'
context (its batch size and default ``n_predict`` are not published), so the answer's ``prompt``
is checked for each segment sent: when the server drops them, the backend says so once, with
the server flags that fix it, and offers only as much other-file context as arrives.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import replace

from starcoder_ls.backends.base import estimate_tokens
from starcoder_ls.types import FimInput, Prompt, Segment

log = logging.getLogger(__name__)

RATE_WINDOW = 8
"""Answers whose token rate is remembered; the highest is used."""
RATE_LIMITS = (0.5, 4.0)
"""Real tokens per estimated token taken as plausible (a wilder figure is a server's mistake)."""
EXTRA_RECHECK_S = 300.0
"""How long a learned limit on other-file context holds before full context is tried again."""
_FRAME = 6
"""Tokens of the frame around the parts: FIM sentinels, the repository line, the file line."""


def _tail(text: str) -> str:
    """What identifies a segment in the server's prompt: its last 48 characters other than
    whitespace (the server keeps the end of the extras, and its detokenizer may tidy spaces,
    as in ``tuple[str, ...]`` -> ``tuple[str,...]``)."""
    return "".join(text.split())[-48:]


class LlamaServer:
    """State learned from one llama-server: its context, the token rate, FIM support, and how
    much context from other files arrives."""

    def __init__(self, shown_url: str) -> None:
        self.shown_url = shown_url
        self.n_ctx = 0
        """Tokens per slot, as the server says (0: not known yet)."""
        self.model = ""
        self.fim = True
        """False once the server said its model has no FIM tokens."""
        self.stale = False
        self.refits = 0
        """Prompts the server refused as too long, cut to its count and sent again."""
        """The connection failed since the server was last asked: it may have restarted."""
        self._rates: deque[float] = deque(maxlen=RATE_WINDOW)
        self._extra_room: int | None = None
        self._extra_set_at = 0.0
        self.notice = ""
        """A problem the user can fix on the server's side, said once (editors show it)."""

    # -- what the server said ---------------------------------------------------------------

    def describe(self, props: object, models: object = None) -> bool:
        """Take the context and model name from ``/props`` (or ``/v1/models``); True when a
        context was found. A changed context (the server was restarted) forgets what was
        learned about other files' context."""
        n_ctx, model = 0, ""
        if isinstance(props, dict):
            settings = props.get("default_generation_settings")
            if isinstance(settings, dict):
                n_ctx = _positive(settings.get("n_ctx"))
            path = props.get("model_path")
            alias = props.get("model_alias")
            model = (
                alias if isinstance(alias, str) and alias else path if isinstance(path, str) else ""
            )
        if not n_ctx and isinstance(models, dict):
            data = models.get("data")
            entry = data[0] if isinstance(data, list) and data else None
            if isinstance(entry, dict):
                meta = entry.get("meta")
                if isinstance(meta, dict):
                    n_ctx = _positive(meta.get("n_ctx")) or _positive(meta.get("n_ctx_train"))
                served = entry.get("id")
                model = model or (served if isinstance(served, str) else "")
        if not n_ctx:
            return False
        model = model.replace("\\", "/").rsplit("/", 1)[-1]
        if self.n_ctx and (n_ctx, model) != (self.n_ctx, self.model):
            # Restarted with other flags or another model: learn it afresh.
            self._extra_room, self.fim = None, True
            self._rates.clear()
        if n_ctx != self.n_ctx:
            log.info("%s: llama-server with %d tokens of context per slot", self.shown_url, n_ctx)
        self.n_ctx, self.model = n_ctx, model
        return True

    @property
    def rate(self) -> float:
        """Real tokens per estimated token (1.0 until measured)."""
        return max(self._rates, default=1.0)

    def learn_rate(self, real_tokens: int, estimated: int) -> None:
        if real_tokens <= 0 or estimated <= 0:
            return
        rate = real_tokens / estimated
        if RATE_LIMITS[0] <= rate <= RATE_LIMITS[1]:
            self._rates.append(rate)

    def context_for_budget(self, configured: int) -> int:
        """The context to budget prompts with, in estimated tokens: the server's (or the
        configured one, when smaller) divided by the token rate."""
        n_ctx = min(self.n_ctx, configured) if configured else self.n_ctx
        return max(1, math.floor(n_ctx / self.rate))

    # -- making a request fit ---------------------------------------------------------------

    @staticmethod
    def estimate(fim: FimInput) -> int:
        """Estimated tokens of the prompt llama-server assembles from these parts."""
        total = estimate_tokens(fim.prefix) + estimate_tokens(fim.suffix) + _FRAME
        for seg in fim.extra:
            total += 1 + estimate_tokens(seg.path + "\n") + estimate_tokens(seg.text)
        return total

    def room(self, n_ctx: int, max_tokens: int) -> int:
        """Prompt tokens a request may use: the context less room to generate (at most half of
        it, as llama-server itself budgets)."""
        return n_ctx - min(max_tokens, n_ctx // 2) - 1

    def fit(self, prompt: Prompt, max_tokens: int, real_tokens: int = 0) -> Prompt:
        """``prompt`` cut to fit the server's context: whole other-file segments first (the
        least relevant, first in the list), then lines from the far end of the prefix and of
        the suffix, 3:1. ``real_tokens``: the server's own count of this prompt, when it
        refused it; otherwise the estimate times the rate."""
        if not self.n_ctx:
            return prompt
        fim = prompt.fim
        estimated = self.estimate(fim)
        rate = real_tokens / estimated if real_tokens and estimated else self.rate
        room = self.room(self.n_ctx, max_tokens)
        extra = list(fim.extra)
        prefix, suffix = fim.prefix, fim.suffix
        # Each piece's estimate rounds up on its own, so a cut is checked and repeated.
        for _ in range(8):
            excess = math.ceil(estimated - room / rate)  # in estimated tokens
            if excess <= 0:
                break
            while extra and excess > 0:
                seg = extra.pop(0)
                excess -= 1 + estimate_tokens(seg.path + "\n") + estimate_tokens(seg.text)
            if excess > 0:
                from_suffix = min(estimate_tokens(suffix), math.ceil(excess / 4))
                from_prefix = excess - from_suffix
                if from_prefix > estimate_tokens(prefix):
                    from_suffix += from_prefix - estimate_tokens(prefix)
                prefix = _drop_head(prefix, max(from_prefix, 1 if from_suffix == 0 else 0))
                suffix = _drop_tail(suffix, from_suffix)
            estimated = self.estimate(
                replace(fim, prefix=prefix, suffix=suffix, extra=tuple(extra))
            )
            if not (extra or prefix or suffix):
                break
        else:
            log.debug("%s: could not cut the prompt to %d tokens", self.shown_url, room)
        if (prefix, suffix, len(extra)) == (fim.prefix, fim.suffix, len(fim.extra)):
            return prompt
        return replace(prompt, fim=replace(fim, prefix=prefix, suffix=suffix, extra=tuple(extra)))

    # -- other files' context ---------------------------------------------------------------

    @property
    def extra_room(self) -> int | None:
        """Estimated tokens of other-file context that reach the model (None: no limit seen)."""
        if self._extra_room is not None and time.monotonic() - self._extra_set_at > EXTRA_RECHECK_S:
            self._extra_room = None  # the server may have been restarted with other flags
        return self._extra_room

    def check_extra(self, sent: tuple[Segment, ...], echo: str | None) -> int | None:
        """After an answer: how many of the ``sent`` segments the server's ``prompt`` holds
        (None when it did not say). Learns the limit when some were left out."""
        if not sent or echo is None:
            return None
        echo = "".join(echo.split())
        arrived = [seg for seg in sent if _tail(seg.text) in echo]
        if len(arrived) == len(sent):
            return len(arrived)
        # llama-server keeps the end of the extras: what arrived is what fits.
        self._extra_room = sum(
            1 + estimate_tokens(seg.path + "\n") + estimate_tokens(seg.text) for seg in arrived
        )
        self._extra_set_at = time.monotonic()
        if not self.notice:
            self.notice = (
                f"llama-server at {self.shown_url} left out {len(sent) - len(arrived)} of "
                f"{len(sent)} pieces of context from other files: it keeps at most n_ctx - "
                f"batch size - 2 x n_predict tokens of them, and its n_ctx is {self.n_ctx}. "
                "Start it with a smaller batch (-b 256) or a larger context (-c) to give "
                "completions that context; until then only what fits is sent."
            )
            log.info("%s", self.notice)  # the editor or the command line shows it
        return len(arrived)

    def status(self) -> dict[str, object]:
        """What was learned, for ``starcoder.status``."""
        return {
            "n_ctx": self.n_ctx or None,
            "model": self.model or None,
            "fim": self.fim,
            "token_rate": round(self.rate, 3),
            "refits": self.refits,
            "extra_context_tokens": self.extra_room,
        }


def _positive(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _drop_head(text: str, tokens: int) -> str:
    """``text`` less about ``tokens`` estimated tokens from its start, cut at a line start."""
    if tokens <= 0:
        return text
    cut = _chars_for(text, tokens)
    if cut >= len(text):
        return ""
    line = text.find("\n", cut - 1)
    return text[line + 1 :] if line != -1 else text[cut:]


def _drop_tail(text: str, tokens: int) -> str:
    """``text`` less about ``tokens`` estimated tokens from its end, cut after a line break."""
    if tokens <= 0:
        return text
    cut = _chars_for(text[::-1], tokens)
    if cut >= len(text):
        return ""
    end = len(text) - cut
    line = text.rfind("\n", 0, end)
    return text[: line + 1] if line != -1 else text[:end]


def _chars_for(text: str, tokens: int) -> int:
    """Characters from the start of ``text`` that hold at least ``tokens`` estimated tokens."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if estimate_tokens(text[:mid]) >= tokens:
            hi = mid
        else:
            lo = mid + 1
    return lo
