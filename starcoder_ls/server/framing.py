"""The LSP base protocol on stdin: ``Content-Length`` frames, read defensively.

A client bug, a stray ``print`` in a plugin, or a truncated write must cost the messages it
damaged, never the session. :class:`FrameReader` therefore:

- accepts what well-meaning clients send: header names in any case, LF-only line ends, extra
  headers (``Content-Type``);
- skips a frame it cannot trust (no ``Content-Length``, a negative, non-numeric or absurd one,
  a header block larger than :data:`MAX_HEADER_BYTES`, a body that is not JSON) and
  **resynchronises** on the next ``Content-Length`` header, logging one line that says what it
  skipped and why;
- recovers a message whose ``Content-Length`` overstates its size: when the bytes stop
  arriving (or the next header shows up) and what came is one complete JSON value, that value
  is the message;
- refuses a ``Content-Length`` over :data:`MAX_BODY_BYTES` at once instead of waiting for
  bytes that will never come.

At the end of input it returns None (the caller shuts the server down), saying so if the input
ended inside a message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024
STALL_S = 1.0
"""How long a body may stop arriving before a shorter complete JSON value is taken as the
message (a ``Content-Length`` that overstated it)."""
CHUNK = 1 << 16

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
_HEADER_LINE = re.compile(rb"([!#-'*+.0-9A-Z^-z|~-]+)[ \t]*:[ \t]*(.*?)[ \t]*")


class FrameReader:
    """Reads frame bodies from ``read`` (an awaitable read of up to n bytes; b"" at the end)."""

    def __init__(
        self,
        read: Callable[[int], Awaitable[bytes]],
        *,
        max_header: int = MAX_HEADER_BYTES,
        max_body: int = MAX_BODY_BYTES,
        stall_s: float = STALL_S,
    ) -> None:
        self._read = read
        self._buf = bytearray()
        self._eof = False
        self._pending: asyncio.Future[bytes] | None = None
        self.max_header = max_header
        self.max_body = max_body
        self.stall_s = stall_s
        self._resyncing = False
        self.skipped = 0
        """Frames skipped so far (damaged or untrustworthy)."""

    # -- input -------------------------------------------------------------------------------

    async def _fill(self, timeout: float | None = None) -> bool:
        """Read more; False at the end of input, or when ``timeout`` passed with nothing."""
        if self._eof:
            return False
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read(CHUNK))
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return False  # the read stays pending: no byte is lost
        chunk = self._pending.result()
        self._pending = None
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    # -- frames ------------------------------------------------------------------------------

    async def next_body(self) -> bytes | None:
        """The next frame's body, or None at the end of input."""
        while True:
            if self._resyncing and not await self._resync():
                self._ended()
                return None
            found = _HEADER_END.search(self._buf)
            if found is None:
                if len(self._buf) > self.max_header:
                    del self._buf[:1]  # past this block's own Content-Length, if any
                    self._skip(f"a header block over {self.max_header} bytes")
                    continue
                if not await self._fill():
                    self._ended()
                    return None
                continue
            header = bytes(self._buf[: found.start()])
            length, problem = self._content_length(header)
            if problem is not None:
                later = _last_content_length(header)
                if later > 0:  # junk glued before a real header: start there
                    del self._buf[:later]
                    self._note(f"{later} bytes before a header ({problem})")
                    continue
                del self._buf[: found.end()]
                self._skip(problem)
                continue
            del self._buf[: found.end()]
            while len(self._buf) < length:
                if await self._fill(self.stall_s):
                    continue
                if self._eof:
                    self._ended()
                    return None
                recovered = self._recover_overstated(length)
                if recovered is not None:
                    return recovered
                await self._fill()  # still incomplete: wait for as long as it takes
            body = bytes(self._buf[:length])
            del self._buf[:length]
            return body

    def decode(self, body: bytes, object_hook: Callable[[dict[str, Any]], Any]) -> Any:
        """The message in ``body``, or None when it is not JSON (then the reader skips to the
        next header, or takes a complete message followed by the next frame's header)."""
        try:
            return json.loads(body, object_hook=object_hook)
        except json.JSONDecodeError as exc:
            text = body.decode("utf-8", "replace")
            try:
                value, end = json.JSONDecoder(object_hook=object_hook).raw_decode(text.lstrip())
            except json.JSONDecodeError:
                value, end = None, -1
            rest = text.lstrip()[end:].lstrip() if end >= 0 else ""
            if value is not None and _starts_header(rest.encode()):
                # Content-Length overstated the message: the rest is the next frame.
                self._buf[:0] = rest.encode()
                self._note(f"a Content-Length {len(body)} larger than its message")
                return value
            self._skip(f"a {len(body)}-byte body that is not JSON ({exc.msg})")
            return None

    # -- damage ------------------------------------------------------------------------------

    def _content_length(self, header: bytes) -> tuple[int, str | None]:
        length: int | None = None
        for raw in header.split(b"\n"):
            line = raw.rstrip(b"\r")
            match = _HEADER_LINE.fullmatch(line)
            if match is None:
                return 0, f"a malformed header line {line[:60]!r}"
            if match.group(1).lower() != b"content-length":
                continue
            value = match.group(2)
            if not value.isdigit():
                return 0, f"Content-Length {value[:30].decode('latin-1')!r} is not a byte count"
            length = int(value)
        if length is None:
            return 0, "a header without Content-Length"
        if length > self.max_body:
            return 0, f"Content-Length {length} over the limit of {self.max_body} bytes"
        return length, None

    def _skip(self, why: str) -> None:
        """Drop the damaged frame: look for the next Content-Length header."""
        self.skipped += 1
        self._resyncing = True
        log.warning("stdin: skipped %s; looking for the next message", why)

    def _note(self, what: str) -> None:
        self.skipped += 1
        log.warning("stdin: recovered from %s", what)

    async def _resync(self) -> bool:
        """Drop input up to the next ``Content-Length`` header; False at the end of input."""
        dropped = 0
        while True:
            found = _CONTENT_LENGTH.search(self._buf)
            if found is not None:
                dropped += found.start()
                del self._buf[: found.start()]
                self._resyncing = False
                if dropped:
                    log.info("stdin: dropped %d bytes before the next message", dropped)
                return True
            keep = 32  # a header name cut in two by a read
            if len(self._buf) > keep:
                dropped += len(self._buf) - keep
                del self._buf[:-keep]
            if not await self._fill():
                return False

    def _recover_overstated(self, length: int) -> bytes | None:
        """A stalled body whose bytes so far are one complete JSON value: that is the message
        (its Content-Length said ``length``)."""
        text = bytes(self._buf)
        try:
            _, end = json.JSONDecoder().raw_decode(text.decode("utf-8").lstrip())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        start = len(text) - len(text.lstrip())
        taken = start + len(text.decode("utf-8").lstrip()[:end].encode("utf-8"))
        rest = text[taken:].lstrip()
        if rest and not _starts_header(rest):
            return None  # more follows that is not the next frame: keep waiting
        del self._buf[:taken]
        self._note(f"a Content-Length {length} larger than its {taken}-byte message")
        return text[:taken]

    def _ended(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._buf.strip():
            log.warning("stdin ended inside a message (%d bytes unread)", len(self._buf))
        return None


def _last_content_length(header: bytes) -> int:
    """Where the last ``Content-Length`` of a rejected header block starts, when it is not the
    block's start (0 otherwise)."""
    last = 0
    for match in _CONTENT_LENGTH.finditer(header):
        last = match.start()
    return last


def _starts_header(data: bytes) -> bool:
    """``data`` starts with a Content-Length header, or with as much of one as has arrived."""
    head = data[:16].lower()
    return bool(head) and (
        _CONTENT_LENGTH.match(data) is not None or b"content-length:".startswith(head)
    )
