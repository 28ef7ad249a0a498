"""Real network faults for tests: a switchable TCP proxy and listeners that never answer.

``FaultProxy`` sits between a client and a real service on a port-0 loopback
listener. Its mode can be switched while connections are open:

``pass``
    forward bytes both ways (the default).
``refuse``
    stop listening, so new connections are refused, and reset the open ones, as
    when the service's process dies.
``hang``
    accept new connections but neither answer nor forward them; the open
    connections stop moving bytes, as when the service or the network freezes.
    Nothing is lost: when the proxy passes again, the held connections go
    upstream and the held bytes are delivered.
``slow``
    forward every chunk after ``delay`` seconds, in both directions.

In an async test::

    async with FaultProxy("127.0.0.1", 5432) as proxy:
        dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        ...                                  # healthy through the proxy
        await proxy.hang()                   # or refuse(), slow(0.5), set_mode("pass")
        ...

From sync code, or around a subprocess, run it on its own event loop in a thread::

    with ThreadedFaultProxy("127.0.0.1", 5672) as proxy:
        proxy.refuse()
        subprocess.run([...f"amqp://guest:guest@127.0.0.1:{proxy.port}/"...])

``HangingListener`` needs no event loop at all: a listening socket that nobody
accepts from. The kernel completes the handshake, so a client connects, sends its
request and waits for an answer that never comes. With ``full_backlog=True`` the
accept queue is kept full, so the kernel drops new SYNs and ``connect()`` itself
hangs (what a firewall that drops packets looks like)::

    with HangingListener() as listener:
        url = f"http://127.0.0.1:{listener.port}/health"
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "refuse", "hang", "slow"]
T = TypeVar("T")

_CHUNK = 65536


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.mode: Mode = "pass"
        self.delay = 0.0
        #: Connections accepted so far, in any mode.
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._closing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> FaultProxy:
        await self._listen()
        return self

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._closing = True
        await self._unlisten()
        # Reset every connection and let the handlers see it; cancelling them
        # instead makes asyncio's stream callback log an error (Python 3.11).
        self._flowing.set()
        self._reset_all()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=5)

    # -- modes -------------------------------------------------------------------

    async def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        if mode not in ("pass", "refuse", "hang", "slow"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.delay = delay if mode == "slow" else 0.0
        if mode == "hang":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "refuse":
            await self._unlisten()
            self._reset_all()
        elif self._server is None:
            await self._listen()

    async def pass_through(self) -> None:
        await self.set_mode("pass")

    async def refuse(self) -> None:
        await self.set_mode("refuse")

    async def hang(self) -> None:
        await self.set_mode("hang")

    async def slow(self, delay: float) -> None:
        await self.set_mode("slow", delay)

    # -- internals ---------------------------------------------------------------

    async def _listen(self) -> None:
        # The same port on every (re)start: clients keep their configured address.
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            # Accepted while hanging: answer nothing until the proxy passes again
            # (what the client sent waits in the reader's buffer).
            await self._flowing.wait()
            if self._closing or self.mode == "refuse":
                return
            try:
                up_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)
                return
            self._writers.add(upstream)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
            self._handlers.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(_CHUNK):
                await self._flowing.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            # One side ended: end the other, as a direct connection would.
            sink.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, as a crashed peer's kernel would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ThreadedFaultProxy:
    """A :class:`FaultProxy` on its own event loop in a daemon thread; sync methods."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.proxy = FaultProxy(target_host, target_port, host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )

    @property
    def host(self) -> str:
        return self.proxy.host

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def address(self) -> str:
        return self.proxy.address

    @property
    def mode(self) -> Mode:
        return self.proxy.mode

    @property
    def accepted(self) -> int:
        return self.proxy.accepted

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> ThreadedFaultProxy:
        self._thread.start()
        self._call(self.proxy.start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self.proxy.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> ThreadedFaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        self._call(self.proxy.set_mode(mode, delay))

    def pass_through(self) -> None:
        self.set_mode("pass")

    def refuse(self) -> None:
        self.set_mode("refuse")

    def hang(self) -> None:
        self.set_mode("hang")

    def slow(self, delay: float) -> None:
        self.set_mode("slow", delay)


class HangingListener:
    """A loopback port that takes connections (or, full_backlog, drops SYNs) and never answers."""

    def __init__(self, host: str = "127.0.0.1", full_backlog: bool = False) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]
        self._fillers: list[socket.socket] = []
        if full_backlog:
            self._sock.listen(0)
            self._fill_backlog()
        else:
            self._sock.listen(128)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _fill_backlog(self) -> None:
        # Linux queues backlog+1 finished handshakes; then it drops SYNs.
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((self.host, self.port))
            self._fillers.append(filler)
            check = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            check.settimeout(0.2)
            try:
                check.connect((self.host, self.port))
            except (TimeoutError, OSError):
                return  # connect() now hangs: the backlog is full
            finally:
                check.close()
        raise RuntimeError("could not fill the listen backlog")

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._sock.close()

    def __enter__(self) -> HangingListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
