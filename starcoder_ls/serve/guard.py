"""Connection limits at the socket layer: a header deadline and a cap on open connections.

uvicorn times out a keep-alive connection only after it has answered a request on it. A
connection that never sends a byte, or sends its headers one byte a second, is held forever,
and enough of them use up the process's file descriptors so that real clients get "Too many
open files". Two pieces fix that without a proxy in front:

- :class:`GuardedH11Protocol` (uvicorn's h11 protocol) sets **a header deadline**: the request
  line and headers must be complete within ``header_timeout_s`` of the connection opening, or
  of the previous answer on a keep-alive connection; otherwise the connection is closed. (The
  body has its own deadline in the app.)
- :class:`GuardedSocket` (the listening socket) applies **a cap on open connections**, overall
  and per client address, at accept() itself, before a file descriptor is spent on a
  connection that cannot be served. A connection that would pass a cap makes room by closing
  the longest-waiting connection that has no request in progress (idle, or still sending
  headers), the newcomer's own address first; when every connection is busy with a request,
  the newcomer is closed at once. A request in progress is never cut off for a newcomer, and a
  flood of idle sockets cannot lock out a client that sends a request.

The cap defaults to what the open-file limit (``ulimit -n``) leaves after the files the
process has open and a margin for one accept burst, so the server closes connections itself
before accept() could fail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

ACCEPT_BURST = 64
"""Connections asyncio accepts in one go (its ``backlog`` argument); the kernel's listen queue
is :data:`LISTEN_BACKLOG`."""
LISTEN_BACKLOG = 2048
SLACK_FDS = 16
"""File descriptors kept for what the process opens later (the key file, logs)."""
WARN_EVERY_S = 60.0


def fd_limit() -> int:
    """The soft limit on open files, raised to the hard limit when that is allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(65536, hard if hard != resource.RLIM_INFINITY else 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return int(min(soft, 65536) if soft != resource.RLIM_INFINITY else 65536)


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64  # not Linux: a guess


def default_max_connections(limit: int | None = None, in_use: int | None = None) -> int:
    """What the open-file limit leaves for connections (at most 4096): the files open now, one
    accept burst of connections about to be closed, and some slack are kept."""
    limit = fd_limit() if limit is None else limit
    in_use = open_fds() if in_use is None else in_use
    return max(8, min(4096, limit - in_use - ACCEPT_BURST - SLACK_FDS))


@dataclass
class ConnectionGuard:
    """The limits, the connections they apply to, and the counters the log and metrics read."""

    header_timeout_s: float = 10.0
    max_connections: int = 1024
    max_per_client: int = 1024
    header_timeouts: int = 0
    evicted: int = 0
    refused: int = 0
    _sockets: dict[int, tuple[socket.socket, str]] = field(default_factory=dict, repr=False)
    """Accepted sockets by file descriptor, with their client address."""
    _protocols: dict[int, GuardedH11Protocol] = field(default_factory=dict, repr=False)
    _warned: float = field(default=-1e9, repr=False)

    def protocol(self) -> type[GuardedH11Protocol]:
        """The protocol class to give uvicorn (``Config(http=...)``), bound to these limits."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})

    def listen(self, sock: socket.socket) -> GuardedSocket:
        """The bound listening socket, taken over so that accept() applies the cap."""
        guarded = GuardedSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        guarded.guard = self
        return guarded

    @property
    def open_connections(self) -> int:
        self._prune()
        return len(self._sockets)

    def _prune(self) -> None:
        gone = [fd for fd, (sock, _) in self._sockets.items() if sock.fileno() != fd]
        for fd in gone:
            del self._sockets[fd]
            self._protocols.pop(fd, None)

    def admit(self, host: str) -> bool:
        """Whether a connection just accepted from ``host`` may stay; makes room if needed."""
        self._prune()
        same = [fd for fd, (_, h) in self._sockets.items() if h == host]
        over = len(same) + 1 - self.max_per_client
        if over > 0 and self._evict(same, over) < over:
            return False
        over = len(self._sockets) + 1 - self.max_connections
        if over > 0:
            mine = [fd for fd, (_, h) in self._sockets.items() if h == host]
            closed = self._evict(mine, over)
            if closed < over:
                others = [fd for fd, (_, h) in self._sockets.items() if h != host]
                closed += self._evict(others, over - closed)
            if closed < over:
                return False
        return True

    def _evict(self, fds: list[int], count: int) -> int:
        """Close up to ``count`` of the longest-waiting connections among ``fds``."""
        waiting = [self._protocols[fd] for fd in fds if fd in self._protocols]
        waiting = sorted((p for p in waiting if p.waiting), key=lambda p: p.waiting_since)
        victims = waiting[:count]
        for victim in victims:
            fd = victim.fd
            victim.close_now()
            self._sockets.pop(fd, None)  # its descriptor is freed at the next turn of the loop
            self._protocols.pop(fd, None)
        if victims:
            self.evicted += len(victims)
            self.warn("connection cap reached: closing idle connections to make room")
        return len(victims)

    def warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "%s (cap %d overall, %d per client; so far %d idle connection(s) closed to make "
                "room, %d refused, %d header timeout(s))",
                what,
                self.max_connections,
                self.max_per_client,
                self.evicted,
                self.refused,
                self.header_timeouts,
            )


class GuardedSocket(socket.socket):
    """A listening socket whose accept() applies the connection cap."""

    guard: ConnectionGuard

    def listen(self, backlog: int | None = None) -> None:
        # asyncio passes its accept-burst size here; the kernel's queue may be longer.
        super().listen(max(backlog or 0, LISTEN_BACKLOG))

    def accept(self) -> tuple[socket.socket, Any]:
        guard = self.guard
        for _ in range(ACCEPT_BURST):
            conn, addr = super().accept()  # BlockingIOError when none is waiting: asyncio stops
            host = addr[0] if isinstance(addr, tuple) else str(addr)
            if guard.admit(host):
                guard._sockets[conn.fileno()] = (conn, host)
                if conn.family in (socket.AF_INET, socket.AF_INET6):
                    # Answers go out at once. asyncio sets this itself only on sockets it made
                    # with proto IPPROTO_TCP; without it an answer written in two pieces waits
                    # for the client's delayed ACK, about 40 ms on every request.
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return conn, addr
            guard.refused += 1
            guard.warn("connection cap reached with every connection busy; refusing new ones")
            conn.close()
        raise BlockingIOError  # many refused in a row: let the event loop breathe


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, known to the guard's cap."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self.waiting_since = time.monotonic()
        self.fd = -1

    @property
    def waiting(self) -> bool:
        """No request in progress: idle, or still sending its request line and headers."""
        return self._header_timer is not None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        if self.fd in self.guard._sockets:
            self.guard._protocols[self.fd] = self
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.guard._protocols.get(self.fd) is self:
            del self.guard._protocols[self.fd]
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # the request line and headers are in: a request runs
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Keep-alive: the next request's headers are due (a pipelined one may already run).
        if not self.transport.is_closing() and self.cycle and self.cycle.response_complete:
            self._arm()

    def close_now(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _arm(self) -> None:
        self._disarm()
        self.waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.guard.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.guard.header_timeouts += 1
            log.debug("closing a connection from %s: no complete request headers", self.client)
            self.transport.abort()
