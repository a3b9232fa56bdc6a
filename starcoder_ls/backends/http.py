"""Remote generation over HTTP (httpx): the team server, vLLM, TGI, llama.cpp server, Ollama,
the Hugging Face inference API. Wire formats live in ``http_dialects``; this module owns the
connection: timeouts, bounded retries, TLS, proxies, the API key, and cancellation.

Cancellation really stops the remote generation. A request is a plain blocking POST on the
calling thread; a small watcher thread waits on the cancel token (and the deadline) and, when
it fires, shuts down the request's TCP socket. The blocked read returns at once, and the server
sees the client disconnect, which vLLM, TGI, llama.cpp server and Ollama all treat as "abort
this generation". The socket is found through httpx's documented ``trace`` request extension
(``connect_tcp``/``start_tls`` complete with the new stream) and the ``network_stream``
response extension (the stream a kept-alive connection goes on using). So that "the" socket
is unambiguous, a backend keeps at most one connection and sends one request at a time; a
request waiting its turn still notices its own cancellation.

The API key is read from the environment variable named in the settings at each request and
only ever placed in the ``Authorization`` header: messages and logs name the variable, never
its value, and any text from a server is scrubbed of it before being shown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from starcoder_ls.backends.base import Stopwatch, cut_at_stop, estimate_tokens, stop_strings
from starcoder_ls.backends.http_dialects import (
    DIALECTS,
    Reply,
    ReplyError,
    completion_body,
    error_message,
    llamacpp_error,
)
from starcoder_ls.backends.llamacpp_server import LlamaServer
from starcoder_ls.scrub import redact, register_secret
from starcoder_ls.types import BackendError, CancelToken, Generation, GenerationParams, Prompt

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192
"""Context assumed for a remote model that ``n_ctx`` does not set and the model registry does
not know (StarCoder's)."""
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
DESCRIBE_EVERY_S = 30.0
"""How often a team server that could not say what it serves is asked again."""
BACKOFF_S = 0.25
"""First retry delay; doubled per attempt, capped at 2 s, and never past the deadline."""


class _Aborted(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Refused(Exception):
    """A llama.cpp server turned the request down in a way the next attempt can avoid: the
    prompt is longer than its context, or its model has no FIM tokens."""

    def __init__(self, kind: str, message: str, n_prompt: int = 0, n_ctx: int = 0) -> None:
        super().__init__(message)
        self.kind, self.message, self.n_prompt, self.n_ctx = kind, message, n_prompt, n_ctx


class _Flight:
    """One request on the wire, and the means to cut it short from another thread."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.done = threading.Event()
        self.aborted = ""
        self._lock = threading.Lock()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx ``trace`` extension: remembers each new connection's stream (TLS replaces TCP).

        An abort that came while connecting takes effect as soon as the socket exists. It must
        not raise here: httpcore calls this from its own cleanup, which has to run for the
        connection to be released to the pool."""
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            with self._lock:
                self.stream = info.get("return_value")
            if self.aborted:
                self._shutdown()

    def watch(self, cancel: CancelToken, deadline: float) -> None:
        while not self.done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.abort("timeout")
                return
            if cancel.wait(min(0.05, remaining)):
                self.abort("cancelled")
                return

    def abort(self, why: str) -> None:
        if self.done.is_set():
            return
        self.aborted = why
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            stream = self.stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read; the server sees EOF


class HttpBackend:
    """A completion server reached over HTTP, in one of the ``http_dialects`` formats."""

    def __init__(
        self,
        kind: str,
        *,
        url: str = "",
        model: str = "",
        api_key_env: str = "",
        timeout_ms: int = 10_000,
        retries: int = 1,
        tls_verify: bool = True,
        ca_bundle: str = "",
        n_ctx: int = 0,
    ) -> None:
        import httpx

        if kind not in DIALECTS:
            raise BackendError(f"unknown remote backend {kind!r}; one of {', '.join(DIALECTS)}")
        self.dialect = DIALECTS[kind]
        self.name = kind
        if self.dialect.needs_model and not model and not (url and kind == "huggingface"):
            raise BackendError(f"the {kind} backend needs a model name (setting: model)")
        base = url or self.dialect.default_url.format(model=model)
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BackendError(f"url must be an http:// or https:// address, got {base!r}")
        self.url = self.dialect.endpoint(base)
        self.shown_url = _without_credentials(self.url)
        self.model = model
        self.model_id = model or self.shown_url
        self._context_length = n_ctx or _known_context(model) or DEFAULT_CONTEXT
        self.api_key_env = api_key_env or self.dialect.api_key_env
        self.timeout = timeout_ms / 1000.0
        self.retries = max(0, retries)
        self._client = httpx.Client(
            verify=_tls_context(tls_verify, ca_bundle),
            trust_env=True,  # HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE from the environment
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers={"User-Agent": "starcoder-ls"},
        )
        self._stream: Any = None
        """The kept-alive connection's stream, the one the next request will most likely use."""
        self._lock = threading.Lock()
        self._family: str | None = None
        self._n_ctx = n_ctx
        self._described_at = -DESCRIBE_EVERY_S
        self._llama = LlamaServer(self.shown_url) if kind == "llamacpp-server" else None
        """What a llama.cpp server said about itself; asked on first use, not here, so that
        creating the backend never waits on the network."""
        if kind == "starcoder-ls":
            self._describe()

    @property
    def family(self) -> str | None:
        """The prompt family the server says it serves; None when unknown (other servers, or a
        team server that could not be asked yet: asked again every 30 s). A llama.cpp server
        whose model has no FIM tokens gets left-to-right prompts."""
        if self._llama is not None:
            if self._llama.fim:
                return None
            from starcoder_ls.prompt.templates import LEFT_TO_RIGHT

            return LEFT_TO_RIGHT
        if (
            self._family is None
            and self.name == "starcoder-ls"
            and time.monotonic() - self._described_at >= DESCRIBE_EVERY_S
        ):
            self._describe()
        return self._family

    @property
    def context_length(self) -> int:
        """Tokens the prompt budget may count on. For a llama.cpp server: its context per slot
        (asked on first use, again every 30 s while it cannot say), in the estimate's units."""
        llama = self._llama
        if llama is None:
            return self._context_length
        if self._llama_due():
            self._describe_llama()
        return llama.context_for_budget(self._n_ctx) if llama.n_ctx else self._context_length

    @property
    def extra_context_tokens(self) -> int | None:
        """Estimated tokens of other files' context the server lets reach the model; None
        when it has shown no limit."""
        return self._llama.extra_room if self._llama is not None else None

    @property
    def notice(self) -> str:
        """A problem with the server's setup that the user can fix there ("" when none)."""
        return self._llama.notice if self._llama is not None else ""

    def status(self) -> dict[str, Any]:
        """The server as the client knows it, for ``starcoder.status``."""
        state: dict[str, Any] = {"url": self.shown_url, "dialect": self.name}
        if self._llama is not None:
            state.update(self._llama.status())
        else:
            state.update(context_length=self._context_length, family=self._family)
        return state

    def _llama_due(self) -> bool:
        llama = self._llama
        return (
            llama is not None
            and (not llama.n_ctx or llama.stale)
            and (llama.stale or time.monotonic() - self._described_at >= DESCRIBE_EVERY_S)
        )

    def _base_url(self) -> str:
        return self.url[: -len(self.dialect.path)] if self.dialect.path else self.url

    def _describe_llama(self) -> None:
        """``GET /props`` (``/v1/models`` where that is turned off) of a llama.cpp server:
        its context per slot and its model's name. Best effort, like ``_describe``."""
        import httpx

        assert self._llama is not None
        self._described_at = time.monotonic()
        self._llama.stale = False
        found: list[Any] = []
        for route in ("/props", "/v1/models"):
            try:
                response = self._client.get(
                    self._base_url() + route,
                    headers=self._headers(),
                    timeout=min(self.timeout, 3),
                )
                found.append(response.json() if response.status_code == 200 else None)
            except (httpx.HTTPError, BackendError, ValueError):
                found.append(None)
            if self._llama.describe(*found):
                if not self.model and self._llama.model:
                    self.model_id = self._llama.model
                return
        log.info(
            "%s does not say its context; using %d tokens", self.shown_url, self._context_length
        )

    def _describe(self) -> None:
        """Ask a team server what it serves (``GET /v1/models``): its prompt family, context
        length and model name, so prompts fit the model even under a name the model registry
        does not know. Best effort: a server that is down now gets its clear error at the
        first completion, and is asked again later."""
        import httpx

        self._described_at = time.monotonic()
        url = self.url[: -len("/completions")] + "/models"
        try:
            response = self._client.get(url, headers=self._headers(), timeout=min(self.timeout, 3))
            entry = response.json()["data"][0] if response.status_code == 200 else None
        except (httpx.HTTPError, BackendError, ValueError, KeyError, IndexError, TypeError):
            entry = None
        if not isinstance(entry, dict):
            log.info(
                "%s does not describe its model; using the settings", _without_credentials(url)
            )
            return
        family, context, served = entry.get("family"), entry.get("context_length"), entry.get("id")
        from starcoder_ls.prompt.templates import FAMILIES

        if isinstance(family, str) and family in FAMILIES:
            self._family = family
        if not self._n_ctx and isinstance(context, int) and context > 0:
            self._context_length = context
        if not self.model and isinstance(served, str) and served:
            self.model_id = served

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    # ----------------------------------------------------------------- requests

    def generate(self, prompt: Prompt, params: GenerationParams, cancel: CancelToken) -> Generation:
        watch = Stopwatch()
        if self._client.is_closed:
            raise BackendError(f"the {self.name} backend for {self.shown_url} was closed")
        deadline = time.monotonic() + self.timeout
        stops = stop_strings(prompt.stop, params.stop)
        sent = params
        if params.stop_after_text and not self.dialect.stops_after_text:
            # A server would end at a leading line break: whitespace-only stops apply here,
            # after the first code.
            sent = replace(params, stop=tuple(s for s in params.stop if s.strip()))
        while not self._lock.acquire(timeout=0.02):
            if cancel.cancelled:
                return Generation(text="", latency_ms=watch.ms(), finish_reason="cancelled")
            if time.monotonic() > deadline:
                raise BackendError(self._timeout_message())
        try:
            if self._llama is None:
                reply = self._exchange(
                    self.dialect.body(prompt, sent, self.model), cancel, deadline
                )
            else:
                reply = self._exchange_llama(prompt, sent, cancel, deadline)
        finally:
            self._lock.release()
        if reply is None:
            return Generation(text="", latency_ms=watch.ms(), finish_reason="cancelled")
        skip = len(reply.text) - len(reply.text.lstrip()) if params.stop_after_text else 0
        rest, stopped = cut_at_stop(reply.text[skip:], stops)
        text = reply.text[:skip] + rest
        return Generation(
            text=text,
            prompt_tokens=reply.prompt_tokens,
            evaluated_tokens=(
                reply.prompt_tokens if reply.evaluated_tokens is None else reply.evaluated_tokens
            ),
            completion_tokens=reply.completion_tokens,
            latency_ms=watch.ms(),
            finish_reason="stop" if stopped else reply.finish_reason,
        )

    def _exchange_llama(
        self, prompt: Prompt, params: GenerationParams, cancel: CancelToken, deadline: float
    ) -> Reply | None:
        """One request to a llama.cpp server, made to fit its context. A refusal the request can
        avoid is answered once: a prompt over the context is cut by the server's own count and
        sent again; a model without FIM tokens gets the prompt left to right at /completion."""
        llama = self._llama
        assert llama is not None
        if self._llama_due():
            self._describe_llama()
        if not llama.fim:
            return self._exchange_l2r(prompt, params, cancel, deadline)
        sent = llama.fit(prompt, params.max_tokens)
        try:
            reply = self._exchange(
                self.dialect.body(sent, params, self.model), cancel, deadline, True
            )
        except _Refused as refusal:
            if refusal.kind == "not_supported_error":
                log.info("%s: %s; completing left to right", self.shown_url, refusal.message)
                llama.fim = False
                return self._exchange_l2r(prompt, params, cancel, deadline)
            estimated = llama.estimate(sent.fim)
            llama.n_ctx = refusal.n_ctx or llama.n_ctx
            llama.learn_rate(refusal.n_prompt, estimated)
            sent = llama.fit(sent, params.max_tokens, refusal.n_prompt)
            llama.refits += 1
            log.info(
                "%s: the prompt was %d tokens for a context of %d; sending it cut to fit",
                self.shown_url,
                refusal.n_prompt,
                refusal.n_ctx,
            )
            reply = self._exchange(self.dialect.body(sent, params, self.model), cancel, deadline)
        if reply is None:
            return None
        arrived = llama.check_extra(sent.fim.extra, reply.echo)
        if arrived == len(sent.fim.extra) and not reply.truncated:
            llama.learn_rate(reply.prompt_tokens, llama.estimate(sent.fim))
        return reply

    def _exchange_l2r(
        self, prompt: Prompt, params: GenerationParams, cancel: CancelToken, deadline: float
    ) -> Reply | None:
        """llama.cpp server's ``/completion`` with a left-to-right prompt (the prefix alone when
        this prompt was built for FIM)."""
        from starcoder_ls.prompt.templates import left_to_right

        if not left_to_right(prompt.family):
            prompt = replace(prompt, text=prompt.fim.prefix)
        body = completion_body(prompt, params, self.model)
        return self._exchange(body, cancel, deadline, url=self._base_url() + "/completion")

    def _exchange(
        self,
        body: dict[str, Any],
        cancel: CancelToken,
        deadline: float,
        refusable: bool = False,
        url: str = "",
    ) -> Reply | None:
        """POST with bounded retries (connection errors, 429, 5xx); None when cancelled.
        ``refusable``: a llama.cpp server's refusal that another request can avoid raises
        ``_Refused`` instead of an error."""
        import httpx

        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            delay = min(BACKOFF_S * 2 ** (attempt - 1), 2.0)
            try:
                response = self._post(body, cancel, deadline, url or self.url)
            except _Aborted as exc:
                if exc.why == "cancelled":
                    return None
                raise BackendError(self._timeout_message()) from None
            except httpx.TimeoutException as exc:
                if not isinstance(exc, httpx.ConnectTimeout):  # the budget is spent
                    raise BackendError(self._timeout_message()) from None
                failure = self._timeout_message()
            except httpx.TransportError as exc:
                failure = self._scrub(self._transport_message(exc))
                if self._llama is not None:  # a restarted server may differ: ask again
                    self._llama.stale = True
            else:
                if response.status_code < 400:
                    return self._parse(response)
                if refusable and response.status_code in (400, 501):
                    _raise_refusal(response)
                failure = self._scrub(self._status_message(response, attempt))
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(failure)
                delay = _retry_after(response, delay)
            if attempt == attempts or time.monotonic() + delay >= deadline:
                raise BackendError(failure)
            log.info("%s: %s; retry %d of %d", self.shown_url, failure, attempt, self.retries)
            if cancel.wait(delay):
                return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(
        self, body: dict[str, Any], cancel: CancelToken, deadline: float, url: str
    ) -> httpx.Response:
        flight = _Flight(self._stream)
        watcher = threading.Thread(target=flight.watch, args=(cancel, deadline), daemon=True)
        watcher.start()
        try:
            response = self._client.post(
                url,
                json=body,
                headers=self._headers(),
                timeout=max(0.001, deadline - time.monotonic()),
                extensions={"trace": flight.trace},
            )
        except Exception:
            if flight.aborted:
                raise _Aborted(flight.aborted) from None
            raise
        finally:
            flight.done.set()
        self._stream = response.extensions.get("network_stream", flight.stream)
        if flight.aborted == "cancelled":
            raise _Aborted("cancelled")
        return response

    def _key(self) -> str | None:
        """The API key from its environment variable: surrounding whitespace (the newline of
        ``export KEY=$(cat file)``) dropped, and masked in every log line from now on."""
        raw = os.environ.get(self.api_key_env) if self.api_key_env else None
        if not raw:
            return None
        register_secret(raw)
        key = raw.strip()
        if not key or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in key):
            raise BackendError(
                f"the API key in environment variable {self.api_key_env} contains spaces, line "
                "breaks or control characters; set it to the key alone"
            )
        return key

    def _headers(self) -> dict[str, str]:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ------------------------------------------------------------------ answers

    def _parse(self, response: httpx.Response) -> Reply:
        try:
            return self.dialect.parse(response.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            snippet = response.text[:200]
            raise BackendError(
                self._scrub(f"{self.shown_url} answered with something not JSON: {snippet!r}")
            ) from None
        except (ReplyError, AttributeError, TypeError) as exc:
            raise BackendError(
                self._scrub(
                    f"{self.shown_url} answered in an unexpected shape for the {self.name} "
                    f"backend ({exc}); is this the right backend for this server?"
                )
            ) from None

    def _status_message(self, response: httpx.Response, attempts: int) -> str:
        status = response.status_code
        try:
            detail = error_message(response.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            detail = response.text
        detail = " ".join(detail.split())[:300]
        head = f"HTTP {status} from {self.shown_url}"
        if attempts > 1:
            head += f" after {attempts} attempts"
        if detail:
            head += f": {detail}"
        if status in (401, 403):
            if not self.api_key_env:
                return (
                    f"{head}. The server wants an API key: set apiKeyEnv to the name of an "
                    "environment variable that holds it."
                )
            state = "is set but was refused" if os.environ.get(self.api_key_env) else "is not set"
            return f"{head}. Check the API key: environment variable {self.api_key_env} {state}."
        if status == 404:
            return (
                f"{head}. Is the url right, is {self.name} the right backend for this server, "
                f"and does it serve model {self.model or '(none set)'!r}?"
            )
        return head

    def _transport_message(self, exc: httpx.TransportError) -> str:
        text = str(exc) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc.__cause__, ssl.SSLError):
            return (
                f"TLS certificate check failed for {self.shown_url}: {text}. Set caBundle to the "
                "CA file of your server, or tlsVerify to false to skip the check (insecure)."
            )
        return f"cannot reach {self.shown_url}: {text}. Is the server running?"

    def _scrub(self, text: str) -> str:
        raw = os.environ.get(self.api_key_env) if self.api_key_env else None
        register_secret(raw)
        text = redact(text)
        return text.replace(raw.strip(), "***") if raw and len(raw.strip()) >= 4 else text

    def _timeout_message(self) -> str:
        return f"no answer from {self.shown_url} within {round(self.timeout * 1000)} ms"

    def close(self) -> None:
        self._client.close()


def _tls_context(verify: bool, ca_bundle: str) -> ssl.SSLContext | bool:
    if not verify:
        log.warning("TLS certificate verification is off (tlsVerify false)")
        return False
    if not ca_bundle:
        return True
    path = Path(ca_bundle).expanduser()
    if not path.is_file():
        raise BackendError(f"caBundle {path} does not exist")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise BackendError(f"caBundle {path} is not a PEM certificate file: {exc}") from exc


def _known_context(model: str) -> int:
    """The model's trained context from the registry of known models, 0 if it is unknown."""
    if not model:
        return 0
    try:
        from starcoder_ls.models.registry import lookup
    except ImportError:
        return 0
    info = lookup(model)
    return info.context_length if info is not None else 0


def _raise_refusal(response: httpx.Response) -> None:
    """Raise ``_Refused`` for a llama.cpp server answer that another request can avoid: a prompt
    longer than the context (with the server's counts), a model without FIM tokens."""
    try:
        kind, n_prompt, n_ctx = llamacpp_error(response.json())
        message = error_message(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if kind == "exceed_context_size_error" and n_prompt > 0 and n_ctx > 0:
        raise _Refused(kind, message, n_prompt, n_ctx)
    if kind == "not_supported_error" and "infill" in message.lower():
        raise _Refused(kind, message)


def _retry_after(response: httpx.Response, default: float) -> float:
    """Honour a server's ``Retry-After`` seconds (429, 503) when it is short."""
    value = response.headers.get("retry-after", "")
    return min(float(value), 10.0) if value.replace(".", "", 1).isdigit() else default


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
