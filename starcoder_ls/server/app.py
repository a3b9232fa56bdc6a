"""The language server object: state shared by the handlers and the request flow.

Handlers (in the sibling modules) only translate LSP types; :meth:`StarcoderServer.run_completion`
is the one road every completion request takes: cancel the document's older request, debounce,
snapshot, run the engine in a worker thread, drop the answer if the document moved on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from lsprotocol.types import ResponseError
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCNotification, LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from starcoder_ls import __version__
from starcoder_ls.debounce import Debouncer
from starcoder_ls.documents import DocumentStore, PositionEncoding
from starcoder_ls.engine import CompletionEngine
from starcoder_ls.scrub import redact
from starcoder_ls.server.framing import FrameReader
from starcoder_ls.settings import Settings, parse_settings
from starcoder_ls.stats import Stats
from starcoder_ls.types import BackendError, CancelToken, Completion

log = logging.getLogger(__name__)

_ENCODINGS = {
    lsp.PositionEncodingKind.Utf8: PositionEncoding.UTF8,
    lsp.PositionEncodingKind.Utf16: PositionEncoding.UTF16,
    lsp.PositionEncodingKind.Utf32: PositionEncoding.UTF32,
}
# Repeat the same warning to the user at most this often (a dead backend must not flood).
_WARN_EVERY_S = 60.0


class _Protocol(LanguageServerProtocol):
    """pygls' protocol, with what a long editing session needs:

    - a request whose params do not fit its method gets an error response (pygls drops it
      after logging, which leaves the client waiting forever);
    - a request after ``shutdown`` gets ``InvalidRequest`` (pygls sends nothing);
    - a ``$/cancelRequest`` for a request that already finished is normal (a client cancels
      what it no longer shows), not a warning (Neovim records stderr lines as RPC errors);
    - a client gone by the time an answer is written (the reply to ``shutdown``, typically)
      ends the session with one line in the log, not a traceback;
    - document text is kept once, by the server's own documents: pygls' copy of every
      document applied each keystroke in time proportional to the file (0.5 s in 10 MB).
    """

    @lsp_method(lsp.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: lsp.DidOpenTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(lsp.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: lsp.DidChangeTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(lsp.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: lsp.DidCloseTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(lsp.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", "")
        if self._shutdown and method != lsp.EXIT:
            if getattr(message, "id", None) is not None and method:
                self._send_response(
                    message.id,
                    error=ResponseError(
                        code=lsp.ErrorCodes.InvalidRequest,
                        message=f"the server is shutting down; {method} is not accepted "
                        "(only exit is)",
                    ),
                )
            else:
                log.debug("ignored %s after shutdown", method or "a message")
            return
        super().handle_message(message)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if msg_id not in self._request_futures:
            log.debug("cancel for request %s, which has already finished", msg_id)
            return
        super()._handle_cancel_notification(msg_id)

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" in data and "method" in data:
                log.warning("invalid params for %s (request %s)", data.get("method"), data["id"])
                self._send_response(data["id"], error=exc.to_response_error())
                # Handled: hand pygls a notification nobody listens to.
                return JsonRPCNotification(jsonrpc="2.0", method="$/starcoder/ignored", params=None)
            raise


class _StdoutWriter:
    """stdout for LSP frames; a client that has gone away (its end of the pipe closed, as
    after the reply to ``shutdown``) is noted in one log line, not a traceback per message."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, data: bytes) -> None:
        if self.gone:
            return
        try:
            self._stream.write(data)
            self._stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            self.gone = True
            log.info("the client has gone away (its end of the pipe is closed)")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.close()


@dataclass
class Outcome:
    """A finished completion and where it applies, in the document's own terms."""

    completion: Completion
    uri: str
    version: int
    language_id: str


class StarcoderServer(LanguageServer):
    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("protocol_cls", _Protocol)
        super().__init__("starcoder-ls", f"v{__version__}", **kwargs)
        self.settings = settings or Settings()
        self.cli_settings = self.settings
        self.documents = DocumentStore()
        self.engine = CompletionEngine(self.settings)
        self.debouncer = Debouncer(self.settings.debounce_ms)
        # Written off the event loop, at most every few seconds, and at shutdown.
        self.stats = Stats.load(save_delay_s=2.0) if self.settings.stats else Stats()
        self.root: Path | None = None
        self.roots: list[Path] = []
        """Every workspace folder (``root`` is the first: paths in prompts are relative to it)."""
        self.init_params: lsp.InitializeParams | None = None
        from starcoder_ls.server.workspace import WorkspaceSupport

        self.workspace_support = WorkspaceSupport(self)
        self.encoding = PositionEncoding.UTF16
        self.inline_supported = False
        self.client_pulls_configuration = False
        self._inflight: dict[str, CancelToken] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="starcoder-generate"
        )
        self._warned: dict[str, float] = {}
        self.backend_ok = True

    def _start_io_async(self, stdin: Any = None, stdout: Any = None) -> None:
        if stdin is not None:
            super()._start_io_async(stdin, stdout)
            return
        import sys
        from threading import Event

        stop = self._stop_event = Event()
        self.protocol.set_writer(_StdoutWriter(stdout or sys.stdout.buffer))

        async def serve_stdio() -> None:
            loop = asyncio.get_running_loop()
            read: Any
            try:
                # stdin read on the event loop itself (asyncio pipe transport): pygls' reader
                # hands every read to a thread, a millisecond per request.
                stream = asyncio.StreamReader(limit=1 << 20)
                await loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(stream), sys.stdin.buffer
                )
                read = stream.read
            except (ValueError, OSError):  # not a pipe (a regular file): read it in a thread
                raw: Any = sys.stdin.buffer

                def read(n: int) -> Any:
                    return loop.run_in_executor(self.thread_pool, raw.read1, n)

            await self.read_messages(FrameReader(read), stop)

        try:
            asyncio.run(serve_stdio())
        except BrokenPipeError:
            log.error("the connection to the client is lost; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    async def read_messages(self, frames: FrameReader, stop: Any) -> None:
        """Hand every message on ``frames`` to the protocol until the input ends."""
        protocol = self.protocol
        while not stop.is_set():
            body = await frames.next_body()
            if body is None:
                log.info("stdin closed; shutting down")
                return
            try:
                message = frames.decode(body, protocol.structure_message)
                if message is not None:
                    protocol.handle_message(message)
            except Exception as exc:  # a message the protocol cannot take: this one only
                log.exception("could not handle a message")
                self.report_server_error(exc, JsonRpcException)

    # -- settings and messages ---------------------------------------------------------------

    def apply_settings(self, raw: Any, *, base: Settings | None = None) -> list[str]:
        settings, errors = parse_settings(raw, base or self.settings)
        old, self.settings = self.settings, settings
        if self.engine.update_settings(settings):
            # Another backend: its first failure is news, whatever the last one said.
            for key in ("backend", "timeout"):
                self._warned.pop(key, None)
        if (old.workspace, old.cross_file) != (settings.workspace, settings.cross_file):
            self.workspace_support.settings_changed()
        self.debouncer.base_ms = settings.debounce_ms
        for message in errors:
            self.show(lsp.MessageType.Warning, f"starcoder-ls settings: {message}", key=message)
        return errors

    def show(
        self, kind: lsp.MessageType, message: str, *, key: str | None = None, once: bool = False
    ) -> None:
        """window/showMessage, at most once a minute per ``key`` (and logged); with ``once``,
        only the first time until the key is cleared (a new backend clears its keys)."""
        message = redact(message)  # whatever an error quoted, never a key
        key = key or message
        now = time.monotonic()
        if once and key in self._warned:
            log.debug("suppressed repeated message: %s", message)
            return
        if now - self._warned.get(key, -1e9) < _WARN_EVERY_S:
            log.debug("suppressed repeated message: %s", message)
            return
        self._warned[key] = now
        log.log(logging.WARNING if kind <= lsp.MessageType.Warning else logging.INFO, message)
        try:
            self.window_show_message(lsp.ShowMessageParams(type=kind, message=message))
        except Exception:  # no client attached (tests, shutdown)
            log.debug("could not send showMessage", exc_info=True)

    def set_encoding(self, kind: str | None) -> None:
        self.encoding = _ENCODINGS.get(kind or "", PositionEncoding.UTF16)  # type: ignore[call-overload]
        self.documents.encoding = self.encoding

    # -- the completion road -------------------------------------------------------------------

    async def run_completion(
        self,
        uri: str,
        line: int,
        character: int,
        *,
        invoked: bool,
        context_tokens: int | None = None,
    ) -> Outcome | None:
        """A completion at an LSP position (in the negotiated encoding), or None."""
        doc = self.documents.get(uri)
        if doc is None:
            log.info("completion requested for a document that is not open: %s", uri)
            return None
        if 0 <= line < doc.line_count:
            self.workspace_support.viewed(doc, line)
        return await self.run_completion_on(
            doc, line, character, invoked=invoked, live=doc, context_tokens=context_tokens
        )

    async def run_completion_on(
        self,
        doc: Any,
        line: int,
        character: int,
        *,
        invoked: bool,
        live: Any,
        context_tokens: int | None = None,
    ) -> Outcome | None:
        """Complete in ``doc`` (the open document, or a scratch copy of it); the answer is
        dropped when ``live``, the open document, has changed meanwhile."""
        uri = live.uri
        previous = self._inflight.get(uri)
        if previous is not None:
            previous.cancel()
        token = CancelToken()
        self._inflight[uri] = token
        try:
            if not invoked:
                self.debouncer.note_request(uri)
            delay = self.debouncer.delay_ms(invoked) / 1000
            if delay:
                await asyncio.sleep(delay)
            if token.cancelled:
                return None
            snapshot = doc.snapshot()
            live_version = live.version
            cp_line, cp_col = doc.to_codepoints(line, character)
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            future = loop.run_in_executor(
                self._pool,
                lambda: self.engine.complete(
                    snapshot,
                    cp_line,
                    cp_col,
                    cancel=token,
                    root=self.root,
                    invoked=invoked,
                    context_tokens=context_tokens,
                ),
            )
            try:
                # asyncio.wait neither wraps nor cancels the future: a $/cancelRequest raises
                # CancelledError here and the token (below) stops the generation itself.
                done, _ = await asyncio.wait({future}, timeout=self.settings.timeout_ms / 1000)
                if not done:
                    raise asyncio.TimeoutError
                completion = future.result()
            except asyncio.TimeoutError:
                token.cancel()
                self.show(
                    lsp.MessageType.Warning,
                    f"starcoder-ls: the backend did not answer within {self.settings.timeout_ms} "
                    "ms (timeoutMs); returning no completion",
                    key="timeout",
                )
                return None
            except BackendError as exc:
                self.backend_ok = False
                # A model that crashed its worker while loading stays broken until the
                # settings change: say so once, not every minute of typing.
                load_crash = bool(getattr(exc, "at_load", False))
                self.show(
                    lsp.MessageType.Error, f"starcoder-ls: {exc}", key="backend", once=load_crash
                )
                return None
            except Exception:  # a bug must cost one completion, not the session
                log.exception("completion failed at %s:%d:%d", uri, line, character)
                self.show(
                    lsp.MessageType.Error,
                    "starcoder-ls: internal error while completing (details in the log)",
                    key="internal",
                )
                return None
            if not self.backend_ok:
                # The warnings' rate limit stands: a backend that fails every other request
                # must not pop up a message every other request.
                self.backend_ok = True
                log.info("the backend answers again")
            # Something the answer showed about the server's setup (llama-server dropping the
            # other files' context): said once.
            if notice := getattr(self.engine.backend(), "notice", ""):
                self.show(lsp.MessageType.Warning, f"starcoder-ls: {notice}", key=notice, once=True)
            if completion is None or token.cancelled:
                return None
            if not completion.cached:
                self.debouncer.note_latency((time.perf_counter() - started) * 1000)
            current = self.documents.get(uri)
            if current is None or current is not live or live.version != live_version:
                return None  # the document moved on while we computed
            return Outcome(completion, uri, live_version, snapshot.language_id or "")
        except asyncio.CancelledError:
            token.cancel()  # $/cancelRequest: stop the generation itself, not just the answer
            raise
        finally:
            if self._inflight.get(uri) is token:
                del self._inflight[uri]

    def lsp_position(self, uri: str, line: int, character: int) -> lsp.Position:
        """A code-point position converted to the negotiated encoding."""
        doc = self.documents.get(uri)
        if doc is None:
            return lsp.Position(line=line, character=character)
        el, ec = doc.from_codepoints(line, character)
        return lsp.Position(line=el, character=ec)

    def shutdown(self) -> None:
        """The transport closed (after ``exit``, or the client went away without it)."""
        self.stats.flush()
        super().shutdown()

    def shutdown_engine(self) -> None:
        for token in list(self._inflight.values()):
            token.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.workspace_support.shutdown()
        self.engine.close()
        self.stats.flush()
