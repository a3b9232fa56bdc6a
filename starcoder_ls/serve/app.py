"""The team server's HTTP side (Starlette on uvicorn): routes, keys, limits, and the life of a
request from its first byte to the last byte of its answer.

Handlers are async and never block: the model runs on the engine's worker thread, and a handler
waits on its jobs' futures together with the client's connection. When the client goes away, or
the request runs past its time, the jobs are cancelled, which frees their slots at the next
token. Every refusal is a JSON error in OpenAI's shape, with a message that says what to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from starcoder_ls import __version__
from starcoder_ls.serve.auth import ApiKeys, redact_query
from starcoder_ls.serve.engine import Draining, Engine, Job, QueueFull
from starcoder_ls.serve.metrics import CONTENT_TYPE, Metrics
from starcoder_ls.serve.replies import ChatFormat, Format, InfillFormat, OpenAIFormat, sse
from starcoder_ls.serve.schema import (
    ApiError,
    CompletionRequest,
    Limits,
    Served,
    fim_request,
    fit_extra,
    infill_request,
    openai_request,
    parse_json,
)
from starcoder_ls.types import BackendError, Generation

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 10.0
    """A body must arrive within this time (slow-loris clients are cut off)."""
    request_timeout_s: float = 60.0
    """Longest a generation may run, queue wait included."""


class Service:
    """What the routes share: the engine, the keys, the limits, the metrics."""

    def __init__(
        self,
        engine: Engine,
        served: Served,
        *,
        keys: ApiKeys,
        limits: Limits,
        http: HttpLimits,
    ) -> None:
        self.engine = engine
        self.served = served
        self.keys = keys
        self.limits = limits
        self.http = http
        self.metrics = Metrics(engine)
        self.draining = False

    # ------------------------------------------------------------------ routes

    async def health(self, request: Request) -> Response:
        engine = self.engine
        body = {
            "status": "draining" if self.draining or engine.draining else "ok",
            "model": self.served.name,
            "slots": engine.max_batch,
            "running": engine.running,
            "queue_depth": engine.queue_depth,
        }
        return JSONResponse(body, status_code=503 if body["status"] == "draining" else 200)

    async def models(self, request: Request) -> Response:
        return await self._guarded(request, "/v1/models", self._models)

    async def props(self, request: Request) -> Response:
        return await self._guarded(request, "/props", self._props)

    async def _props(self, request: Request) -> Response:
        """llama-server's ``GET /props``, the fields its clients read: the context per request
        (``default_generation_settings.n_ctx``), the model, how many requests run at once."""
        return JSONResponse(
            {
                "default_generation_settings": {
                    "n_ctx": self.engine.context_length,
                    "params": {"n_predict": -1, "temperature": 0.0, "top_p": 1.0},
                },
                "total_slots": self.engine.max_batch,
                "model_alias": self.served.name,
                "model_path": self.engine.model_id,
                "build_info": f"starcoder-ls {__version__}",
                "is_sleeping": False,
            }
        )

    async def _models(self, request: Request) -> Response:
        entry = {
            "id": self.served.name,
            "object": "model",
            "created": 0,
            "owned_by": "starcoder-ls",
            "family": self.served.family,
            "context_length": self.engine.context_length,
            "max_model_len": self.engine.context_length,  # vLLM's name for it
            # llama-server's place for it, where llama.cpp clients look.
            "meta": {
                "n_ctx": self.engine.context_length,
                "n_ctx_train": self.engine.context_length,
            },
        }
        kernels = getattr(self.engine.backend, "kernels", None)
        if kernels is not None:  # transformers: what the model runs on, for whoever operates it
            entry["kernels"] = kernels.summary()
        return JSONResponse({"object": "list", "data": [entry]})

    async def metrics_route(self, request: Request) -> Response:
        async def render(_: Request) -> Response:
            return Response(self.metrics.render(), media_type=CONTENT_TYPE)

        return await self._guarded(request, "/metrics", render)

    async def completions(self, request: Request) -> Response:
        async def run(req: Request) -> Response:
            body = await self._json(req)
            parsed = openai_request(body, self.served, self.limits)
            fmt = OpenAIFormat(self.served.name, parsed.include_usage)
            return await self._generate(req, "/v1/completions", parsed, fmt)

        return await self._guarded(request, "/v1/completions", run)

    async def fim_completions(self, request: Request) -> Response:
        async def run(req: Request) -> Response:
            body = await self._json(req)
            parsed = fim_request(body, self.served, self.limits)
            fmt = ChatFormat(self.served.name, parsed.include_usage)
            return await self._generate(req, "/v1/fim/completions", parsed, fmt)

        return await self._guarded(request, "/v1/fim/completions", run)

    async def infill(self, request: Request) -> Response:
        async def run(req: Request) -> Response:
            body = await self._json(req)
            parsed = infill_request(body, self.served, self.limits)
            n_ctx = self.engine.context_length
            parsed = await asyncio.to_thread(fit_extra, parsed, self.engine.count_tokens, n_ctx)
            fmt = InfillFormat(
                self.served.name,
                prompt=parsed.prompt.text,
                settings={**(parsed.settings or {}), "n_ctx": n_ctx},
                response_fields=parsed.response_fields,
                dropped=parsed.dropped,
            )
            return await self._generate(req, "/infill", parsed, fmt)

        return await self._guarded(request, "/infill", run)

    # --------------------------------------------------------------- plumbing

    async def _guarded(
        self, request: Request, route: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Keys, then the handler; every refusal and failure becomes a JSON error, and every
        answer that is not a stream is counted here (streams count themselves at their end)."""
        start = time.monotonic()
        try:
            why = self.keys.check(request.headers.get("authorization"))
            if why is not None:
                query = "?" + request.url.query
                if redact_query(query) != query:
                    why += " (a key in the URL is not accepted: URLs are written to logs)"
                raise ApiError(
                    401, why, kind="authentication_error", headers={"WWW-Authenticate": "Bearer"}
                )
            response = await handler(request)
        except ApiError as exc:
            response = JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        except ClientDisconnect:
            self.metrics.cancelled.labels("disconnect").inc()
            response = Response(status_code=499)
        except Exception:  # a bug: the client gets a 500, the server goes on
            log.exception("%s failed", route)
            error = ApiError(500, "internal server error; see the server log", kind="server_error")
            response = JSONResponse(error.body(), status_code=500)
        if not isinstance(response, _EventStream):
            self.metrics.observe(route, response.status_code, time.monotonic() - start)
        return response

    async def _json(self, request: Request) -> dict[str, Any]:
        if self.draining:
            raise self._busy(503, "the server is shutting down; retry on another replica")
        return parse_json(await self._body(request))

    async def _body(self, request: Request) -> bytes:
        limit = self.http.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body is {int(declared)} bytes; the limit is {limit} bytes")
        chunks: list[bytes] = []
        size = 0

        async def read() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), self.http.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(
                408, f"the body did not arrive within {self.http.body_timeout_s:g} s"
            ) from None
        return b"".join(chunks)

    def _busy(self, status: int, message: str) -> ApiError:
        return ApiError(
            status,
            message,
            kind="server_busy" if status == 429 else "server_unavailable",
            headers={"Retry-After": str(self.engine.retry_after())},
        )

    def _submit(self, parsed: CompletionRequest, streaming: bool, pieces: _Pieces) -> list[Job]:
        jobs: list[Job] = []
        for i in range(parsed.n):
            params = (
                parsed.params if i == 0 else replace(parsed.params, seed=parsed.params.seed + i)
            )
            job = Job(parsed.prompt, params, on_text=pieces.sink(i) if streaming else None)
            try:
                self.engine.submit(job)
            except (QueueFull, Draining) as exc:
                for earlier in jobs:
                    earlier.cancel.cancel()
                if isinstance(exc, QueueFull):
                    raise self._busy(429, f"the server is busy: {exc}; retry later") from None
                raise self._busy(503, "the server is shutting down") from None
            pieces.watch(i, job)
            jobs.append(job)
        return jobs

    async def _generate(
        self, request: Request, route: str, parsed: CompletionRequest, fmt: Format
    ) -> Response:
        pieces = _Pieces(asyncio.get_running_loop())
        jobs = self._submit(parsed, parsed.stream, pieces)
        deadline = time.monotonic() + self.http.request_timeout_s
        if parsed.stream:
            return _EventStream(
                lambda disconnect: self._stream(jobs, pieces, fmt, deadline, disconnect),
                self,
                route,
                jobs,
            )
        disconnect = asyncio.ensure_future(_disconnected(request.receive))
        try:
            results = await self._results(jobs, pieces, disconnect, deadline)
        finally:
            disconnect.cancel()
        return JSONResponse(fmt.whole(results))

    async def _results(
        self, jobs: list[Job], pieces: _Pieces, disconnect: asyncio.Future[None], deadline: float
    ) -> list[Generation]:
        left = len(jobs)
        while left:
            item = await self._next(jobs, pieces, disconnect, deadline)
            if item[1] is _DONE:
                left -= 1
        return [self._outcome(job) for job in jobs]

    async def _next(
        self, jobs: list[Job], pieces: _Pieces, disconnect: asyncio.Future[None], deadline: float
    ) -> tuple[int, Any]:
        """The next piece of text or finished job; cancels the jobs and raises when the client
        left (``ClientDisconnect``) or the time is up (504)."""
        get = asyncio.ensure_future(pieces.queue.get())
        waiting: set[asyncio.Future[Any]] = {get, disconnect}
        done, _ = await asyncio.wait(
            waiting,
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if get in done:
            return get.result()
        get.cancel()
        for job in jobs:
            job.cancel.cancel()
        if disconnect in done:
            raise ClientDisconnect()
        self.metrics.cancelled.labels("timeout").inc()
        raise ApiError(
            504,
            f"the generation took longer than {self.http.request_timeout_s:g} s "
            "(--request-timeout) and was stopped",
            kind="timeout",
        )

    def _outcome(self, job: Job) -> Generation:
        exc = job.future.exception()
        if isinstance(exc, Draining):
            raise self._busy(503, str(exc))
        if isinstance(exc, BackendError):
            raise ApiError(500, f"the model failed: {exc}", kind="server_error")
        if exc is not None:
            raise exc
        generation = job.future.result()
        self.metrics.queue_wait.observe(max(0.0, job.started_at - job.queued_at))
        return generation

    async def _stream(
        self,
        jobs: list[Job],
        pieces: _Pieces,
        fmt: Format,
        deadline: float,
        disconnect: asyncio.Future[None],
    ) -> AsyncIterator[bytes]:
        """Events as text arrives, then each choice's last event, then the format's end."""
        left = len(jobs)
        while left:
            index, item = await self._next(jobs, pieces, disconnect, deadline)
            if item is _DONE:
                left -= 1
                yield fmt.last(index, self._outcome(jobs[index]))
            else:
                yield fmt.piece(index, item)
        yield fmt.end([job.future.result() for job in jobs])


class _Pieces:
    """Carries text and finished jobs from the engine's thread to the request's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    def _put(self, item: tuple[int, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def sink(self, index: int) -> Callable[[str], None]:
        return lambda text: self._put((index, text))

    def watch(self, index: int, job: Job) -> None:
        job.future.add_done_callback(lambda _: self._put((index, _DONE)))


async def _disconnected(receive: Receive) -> None:
    """Returns when the client closes the connection (the body was read before)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _EventStream(Response):
    """Server-sent events from an async generator that stops, and cancels its jobs, as soon
    as the client goes away, even while no event is due."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Callable[[asyncio.Future[None]], AsyncIterator[bytes]],
        service: Service,
        route: str,
        jobs: list[Job],
    ) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),  # nginx: pass events on as they come
        ]
        self.events = events
        self.service = service
        self.route = route
        self.jobs = jobs
        self.started = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnect = asyncio.ensure_future(_disconnected(receive))
        events: Any = self.events(disconnect)
        status = 200
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async for event in events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except ApiError as exc:  # the headers are sent: the error is the last event
            status = exc.status
            await send({"type": "http.response.body", "body": sse(exc.body()), "more_body": False})
        except (ClientDisconnect, OSError):
            status = 499
            self.service.metrics.cancelled.labels("disconnect").inc()
        finally:
            disconnect.cancel()
            for job in self.jobs:
                job.cancel.cancel()
            await events.aclose()
            self.service.metrics.observe(self.route, status, time.monotonic() - self.started)


def create_app(service: Service, on_shutdown: Callable[[], None] | None = None) -> Starlette:
    routes = [
        Route("/health", service.health, methods=["GET"]),
        Route("/v1/models", service.models, methods=["GET"]),
        Route("/props", service.props, methods=["GET"]),
        Route("/metrics", service.metrics_route, methods=["GET"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
        Route("/completions", service.completions, methods=["POST"]),
        Route("/infill", service.infill, methods=["POST"]),
        Route("/v1/fim/completions", service.fim_completions, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await asyncio.get_running_loop().run_in_executor(None, on_shutdown)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = (
            f"no route {request.url.path}; this server answers POST /v1/completions, "
            "POST /v1/fim/completions, POST /infill, GET /v1/models, GET /props, GET /health, "
            "GET /metrics"
            if status == 404
            else f"{request.method} is not allowed on {request.url.path}"
        )
        return JSONResponse(ApiError(status, message).body(), status_code=status)

    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found}
    )
