"""The listening side of the HTTP server: who gets a connection, and for how long.

aiohttp answers the requests; this module accepts the connections. A client that
connects and sends nothing, trickles its headers or never finishes its body must
not hold a descriptor for long, and many of them must not take the descriptors
the probes need (a probe failing with "Too many open files" would tell editors
that publishing is down). So:

- at most ``cap`` connections are open at once: ``server.max_connections``, or
  fewer when the open-file limit leaves less room beside what probes and repairs
  keep (:func:`connection_cap`). At the cap, the connection that has waited
  longest for its client is closed to make room; when every one is being
  answered, new ones wait in the kernel's accept queue, costing no descriptor;
- an idle connection is closed after ``keepalive_timeout``, one whose request
  line and headers have not all arrived after ``header_timeout`` (the body has
  ``body_timeout``, enforced where requests are read: ``api.guard``);
- a failing ``accept()`` and malformed requests are logged at a bounded rate, and
  a malformed request is never logged or echoed with its raw text (which may
  hold an ``Authorization`` header).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_request import BaseRequest

from exporter.descriptors import descriptor_limit, open_descriptors
from exporter.redact import mask_url_secrets
from recovery_webhook.config import ServerConfig

log = logging.getLogger(__name__)

SERVER_NAME = "pipeline-monitor"  # the Server header: no versions for a scanner to match
# Descriptors kept for the recovery side besides the probes: a command's output
# file and pidfd, an HTTP action's connection, notifications, history's files.
REPAIR_RESERVE = 32
REPORT_INTERVAL = 60.0  # at most one line per this many seconds per kind of client trouble
_BACKLOG = 128
_ACCEPT_PAUSE = 0.1  # after an accept() that failed for want of resources
# accept() errors that concern one connection only (it was reset before we took it).
_ONE_CONNECTION = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EAGAIN, errno.EINTR}


def connection_cap(max_connections: int, reserve: int) -> tuple[int, str]:
    """The cap on client connections, and a sentence saying how it was chosen."""
    limit, in_use = descriptor_limit(), open_descriptors()
    if limit is None or in_use is None:
        return max_connections, f"at most {max_connections} connections"
    room = limit - in_use - reserve
    if room >= max_connections:
        return max_connections, f"at most {max_connections} connections"
    cap = max(room, 1)
    return cap, (
        f"at most {cap} connections, not server.max_connections ({max_connections}):"
        f" the open-file limit is {limit}, {in_use} are open and {reserve} are kept"
        " for probes and repairs; raise the limit (LimitNOFILE=, ulimit -n) for more"
    )


class Throttled:
    """A log line that is written at most once per ``interval`` seconds; the next
    one says how many were held back."""

    def __init__(
        self, level: int, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.level = level
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def __call__(self, message: str, *args: Any) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self._held += 1
            return
        if self._held:
            message += " (%d more like it in the last %.0fs)"
            args = (*args, self._held, now - (self._last or now))
        self._last, self._held = now, 0
        log.log(self.level, message, *args)


class Connection(web.RequestHandler):
    """aiohttp's connection handler, with the times the site's limits look at."""

    def __init__(self, manager: web.Server, site: BoundedSite, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.site = site
        self.busy = False  # a request is being handled (see track_requests)
        self.waiting_since = 0.0  # loop time since it waits for its client
        self.head_since: float | None = None  # loop time of a request's first byte
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.waiting_since = asyncio.get_running_loop().time()
        super().connection_made(transport)
        self.site.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.site.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self.busy and self.head_since is None:
            self.head_since = asyncio.get_running_loop().time()
        super().data_received(data)

    def close_now(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            response = super().handle_error(request, status, exc, message)
            response.headers["Server"] = SERVER_NAME
            return response
        # A request aiohttp could not parse. Its message quotes the raw line (a
        # header ending in a bare LF quotes the whole Authorization header): keep
        # only the words before the quote, in the log and in the answer.
        reason = _reason(exc)
        self.site.refused("refused a malformed request from %s: %s", request.remote, reason)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        response = web.Response(
            status=status, text=f"{status} {phrase}: {reason}\n", headers={"Server": SERVER_NAME}
        )
        response.force_close()
        return response


def _reason(exc: HttpProcessingError) -> str:
    first = (exc.message or type(exc).__name__).splitlines()[0]
    for quote in ("b'", 'b"', "'", '"'):
        first = first.split(quote, 1)[0]
    return mask_url_secrets(first.strip().rstrip(":").strip()) or type(exc).__name__


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Marks a connection busy while its request is handled: a busy connection is
    neither timed out nor closed to make room (its body has its own timeout)."""
    connection = request.protocol
    if not isinstance(connection, Connection):
        return await handler(request)
    connection.busy, connection.head_since = True, None
    try:
        return await handler(request)
    finally:
        connection.busy = False
        connection.waiting_since = asyncio.get_running_loop().time()


class BoundedSite(web.BaseSite):
    """Listens on ``host:port``; accepts at most ``cap`` connections at a time."""

    def __init__(
        self, runner: web.BaseRunner, limits: ServerConfig, host: str, port: int, reserve: int
    ) -> None:
        super().__init__(runner, backlog=_BACKLOG)
        self._limits = limits
        self._host, self._port = host, port
        self.cap, self.cap_reason = connection_cap(limits.max_connections, reserve)
        self.connections: set[Connection] = set()
        self._room = asyncio.Event()
        self._sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.accept_failed = Throttled(logging.WARNING, REPORT_INTERVAL)
        self.refused = Throttled(logging.INFO, REPORT_INTERVAL)
        self.made_room = Throttled(logging.WARNING, REPORT_INTERVAL)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return int(self._sockets[0].getsockname()[1]) if self._sockets else self._port

    async def start(self) -> None:
        await super().start()
        self._sockets = await _listen(self._host, self._port, self._backlog)
        self._tasks = [
            asyncio.create_task(self._accept_forever(sock), name="accept") for sock in self._sockets
        ]
        self._tasks.append(asyncio.create_task(self._time_out_forever(), name="idle-connections"))
        log.info("HTTP server: %s", self.cap_reason)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        await super().stop()

    # -- bookkeeping, called by Connection ----------------------------------------

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._room.set()

    # -- accepting -----------------------------------------------------------------

    def _factory(self) -> Connection:
        server = self._runner.server
        assert server is not None
        return Connection(
            server,
            self,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self._limits.keepalive_timeout,
            access_log=None,
        )

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Room is made only for a client that is there: at the cap, a waiting
            # connection is closed when a new one knocks, not before.
            await _readable(listener)
            await self._make_room()
            try:
                client, _ = listener.accept()
            except OSError as exc:
                if not isinstance(exc, BlockingIOError) and exc.errno not in _ONE_CONNECTION:
                    # Out of descriptors or memory: say so (not 44,000 times), and
                    # pause rather than spin on a queue we cannot take from.
                    self.accept_failed("cannot accept connections: %s", exc.strerror or exc)
                    await asyncio.sleep(_ACCEPT_PAUSE)
                continue
            client.setblocking(False)
            try:
                await loop.connect_accepted_socket(self._factory, client)
            except OSError:
                client.close()

    async def _make_room(self) -> None:
        while len(self.connections) >= self.cap:
            victim = self._waiting_longest()
            if victim is None:  # all being answered: the accept queue holds the rest
                self._room.clear()
                await self._room.wait()
                continue
            self.made_room(
                "%d client connections open, the most allowed: closing the ones that wait"
                " longest for their clients",
                len(self.connections),
            )
            victim.close_now()
            await asyncio.sleep(0)  # its connection_lost runs and its descriptor goes

    def _waiting_longest(self) -> Connection | None:
        waiting = [c for c in self.connections if not c.busy and not c.closing]
        return min(waiting, key=_waiting_since, default=None)

    # -- timeouts ------------------------------------------------------------------

    async def _time_out_forever(self) -> None:
        limits = self._limits
        tick = min(1.0, limits.keepalive_timeout / 4, limits.header_timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for connection in list(self.connections):
                if connection.busy or connection.closing:
                    continue
                if connection.head_since is not None:
                    late = now - connection.head_since > limits.header_timeout
                else:
                    late = now - connection.waiting_since > limits.keepalive_timeout
                if late:
                    connection.close_now()


async def _readable(sock: socket.socket) -> None:
    """Wait until ``sock`` has a connection to accept."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _waiting_since(connection: Connection) -> float:
    return connection.head_since if connection.head_since is not None else connection.waiting_since


async def _listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address ``host`` names, as asyncio's create_server
    binds them (an IPv6 socket takes IPv6 only)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
