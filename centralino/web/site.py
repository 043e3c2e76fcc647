"""The listening side of the HTTP server: caps on connections, so that however many clients
connect (or how slowly they talk) the HTTP side never takes the descriptors calls need.

aiohttp has no such cap, so GuardedSite replaces web.TCPSite: it accepts connections itself
and judges each one by its address before aiohttp sees it:
  - at most `per_address` connections from one address;
  - every address but the priority ones shares `shared` connections, what the descriptor limit
    leaves after a reserve for the rest of the service (ARI, the database, files, logs);
  - priority addresses (Asterisk's, which fetches the prompts calls play, and any listed in
    http.priority_addresses) each have their own `per_address` outside that pool, so a flood
    from elsewhere never stops a prompt fetch.
  - an address whose requests keep being refused as abuse (malformed, too large, too slow,
    unknown tokens, too many: see web.common.plain_errors) is barred for a while: refusing
    its connections at accept() costs a fraction of answering its requests one by one (under
    oversized bodies from 40 addresses, bench hostile, the calls' reaction p99 went from 22 to
    N ms). Priority addresses are never barred.
A refused connection is closed right after accept(): no task, no transport, no aiohttp
handler: ~50 us, mostly the kernel's accept and close.
Idle and slow connections are aiohttp's job: its keepalive_timeout (http.idle_timeout) closes
a connection without a complete request head that long after it opened or was last answered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from centralino import metrics
from cti.recalls import SlidingWindow

if TYPE_CHECKING:
    from ssl import SSLContext

    from centralino.settings import HttpSettings

log = logging.getLogger("centralino.web")
# A burst of connection attempts waits in the kernel's queue (the listen backlog: no descriptor
# used; Linux caps it at net.core.somaxconn) instead of being dropped, which would make Asterisk
# or a health check wait a second for its SYN to be sent again. Taken from it a few at a time,
# so that the calls' events are handled in between: under 2,000 slow clients (bench hostile)
# the calls' reaction p99 was 15 ms taking 16 at a time, 5-8 ms taking 4 (128, asyncio's
# way, held the loop ~7 ms per batch).
BACKLOG = 4096
ACCEPTS_PER_WAKEUP = 4
# Refused connections are logged in one line a minute with their count: a log record built for
# each (then folded) cost the loop more than accepting and closing them (profiled under 700/s).
REFUSALS_LOGGED_EVERY = 60.0  # seconds
IDLE_SPREAD = 0.5  # each connection's idle timeout: http.idle_timeout times 1 to 1 + this
_REFUSED = {why: metrics.HTTP_REFUSED.labels(why) for why in ("per_address", "total", "barred")}


def raise_descriptor_limit() -> int:
    """Raise the soft limit of open files to the hard limit and return it: systemd's usual
    soft limit (1,024) is far below what a day of calls and a flood of connections need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open files: soft limit raised from %d to the hard limit, %d", soft, hard)
        return hard
    log.info("open files: limit %d (the hard limit)", soft)
    return soft


def shared_budget(descriptors: int, reserve: int, per_address: int, priority: int,
                  cap: int) -> int:
    """Connections the non-priority addresses may hold together. A connection may hold two
    descriptors (its socket and a file it is sending: a prompt, a console page), and each
    priority address may hold `per_address` connections of its own."""
    return max(0, min(cap, (descriptors - reserve) // 2 - per_address * priority))


class ConnectionLimits:
    """Who may open one more connection: the bookkeeping, apart from sockets."""

    def __init__(self, per_address: int, shared: int, priority: Iterable[str] = (),
                 abuse_limit: int = 0, abuse_window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.per_address = per_address
        self.shared = shared
        self.priority = frozenset(priority)
        self.open: Counter[str] = Counter()  # by address
        self.shared_open = 0
        self.abuse_limit, self.abuse_window = abuse_limit, abuse_window
        self._clock = clock
        # Refused requests by address: the one after `abuse_limit - 1` in the window bars it.
        self._abuse = SlidingWindow(max(0, abuse_limit - 1), abuse_window)
        self.barred: dict[str, float] = {}  # address -> until when

    def admit(self, address: str) -> str | None:
        """Count a new connection from `address`; or say why it is refused (nothing counted)."""
        if self.barred and (until := self.barred.get(address)) is not None:
            if self._clock() < until:
                return "barred"
            del self.barred[address]
        if self.open[address] >= self.per_address:
            return "per_address"
        if address not in self.priority:
            if self.shared_open >= self.shared:
                return "total"
            self.shared_open += 1
        self.open[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if not self.open[address]:
            del self.open[address]  # an address seen once is not remembered forever
        if address not in self.priority:
            self.shared_open -= 1

    def abused(self, address: str) -> bool:
        """A request from `address` was refused as abuse: `abuse_limit` of them within
        `abuse_window` seconds bar the address for `abuse_window` seconds. Whether it is
        barred (then its open connections should close too)."""
        if not self.abuse_limit or address in self.priority:
            return False
        now = self._clock()
        if address in self.barred:
            return True
        if self._abuse.hit(address, datetime.fromtimestamp(now, UTC)) is not None:
            self.barred[address] = now + self.abuse_window
            log.warning("HTTP: %s barred for %g s: %d of its requests refused within %g s "
                        "(malformed, too large, unknown tokens, too many)", address,
                        self.abuse_window, self.abuse_limit, self.abuse_window)
            return True
        return False

    @property
    def total(self) -> int:
        return sum(self.open.values())


def connection_limits(http: HttpSettings, priority: Iterable[str]) -> ConnectionLimits:
    """The caps for this process, from its descriptor limit (read now: after raising it)."""
    priority = frozenset(priority)
    descriptors, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    shared = shared_budget(descriptors, http.descriptor_reserve,
                           http.max_connections_per_address, len(priority), http.max_connections)
    log.info("HTTP: at most %d connections per address; %d for all addresses together but "
             "%s (open files limit %d, %d kept for the rest of the service)",
             http.max_connections_per_address, shared, ", ".join(sorted(priority)) or "none",
             descriptors, http.descriptor_reserve)
    if shared < http.max_connections_per_address:
        log.warning("HTTP: the open files limit (%d) leaves room for only %d connections: raise "
                    "it (systemd: LimitNOFILE=) or lower http.descriptor_reserve",
                    descriptors, shared)
    return ConnectionLimits(http.max_connections_per_address, shared, priority,
                            http.abuse_limit)


async def addresses_of(url: str) -> set[str]:
    """The addresses of a URL's host (Asterisk's: where its prompt fetches come from)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                             type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("HTTP: cannot resolve %s (%s): its connections get no room of their own",
                    host, exc)
        return set()
    return {str(info[4][0]) for info in infos}


class GuardedSite(web.BaseSite):
    """web.TCPSite with ConnectionLimits applied at accept()."""

    __slots__ = ("_host", "_limits", "_port", "_refusals", "_refusals_logged", "_sockets", "_tasks")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits,
                 *, ssl_context: SSLContext | None = None, backlog: int = BACKLOG):
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port, self._limits = host, port, limits
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refusals: Counter[str] = Counter()  # since the last line logged about them
        self._refusals_logged = -REFUSALS_LOGGED_EVERY

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host or None, self._port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)  # "": every address
        for family, *_, address in dict.fromkeys(infos):  # "localhost": 127.0.0.1 and ::1
            sock = socket.create_server(address, family=family, backlog=self._backlog)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)
            self._sockets.append(sock)
        metrics.HTTP_CONNECTIONS.set_function(lambda: self._limits.total)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        await super().stop()

    def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none waiting, or the client gave up already
            except OSError as exc:  # out of descriptors or memory: pause a second, as asyncio does
                log.error("HTTP: cannot accept connections: %s; trying again in 1 s", exc)
                loop.remove_reader(sock.fileno())
                loop.call_later(1, self._resume, sock)
                return
            address = peer[0]
            refused = self._limits.admit(address)
            if refused:
                conn.close()
                _REFUSED[refused].inc()
                self._refused(address, refused)
                continue
            task = loop.create_task(self._serve(conn, address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _refused(self, address: str, why: str) -> None:
        self._refusals[why] += 1
        now = time.monotonic()
        if now - self._refusals_logged < REFUSALS_LOGGED_EVERY:
            return
        log.warning("HTTP: refused a connection from %s: %s (%s refused since the last such "
                    "line)", address, {
                        "per_address": f"{self._limits.per_address} open from it already",
                        "total": f"{self._limits.shared} open from other addresses already",
                        "barred": "barred for its refused requests"}[why],
                    ", ".join(f"{n} {reason}" for reason, n in sorted(self._refusals.items())))
        self._refusals.clear()
        self._refusals_logged = now

    def _resume(self, sock: socket.socket) -> None:
        if sock in self._sockets:  # not stopped meanwhile
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    async def _serve(self, conn: socket.socket, address: str) -> None:
        server = self._runner.server
        assert server is not None
        handler = server()
        # aiohttp closes a connection idle (or with its request head unfinished) exactly
        # keepalive_timeout after it opened: a flood's connections, opened together, were all
        # closed together, hundreds in one pass of the loop, stalling every call 20-30 ms
        # (bench hostile, every 15 s). Each gets its own timeout, up to half again as long.
        if hasattr(handler, "_keepalive_timeout"):
            handler._keepalive_timeout *= IDLE_SPREAD * random.random() + 1  # noqa: S311
        counted = _Counted(handler, lambda: self._limits.release(address))
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: counted, conn, ssl=self._ssl_context)
        except Exception as exc:  # noqa: BLE001 - a failed TLS handshake: aiohttp never saw it
            log.debug("HTTP: connection from %s failed before a request: %s", address, exc)
            conn.close()
            counted.release()


class _Counted(asyncio.Protocol):
    """An admitted connection: aiohttp's request handler behind it, its place given back when
    it closes."""

    __slots__ = ("_handler", "_release")

    def __init__(self, handler: asyncio.Protocol, release: Callable[[], None]):
        self._handler = handler
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        self._handler.connection_lost(exc)
