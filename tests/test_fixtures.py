"""The test tools themselves: the fault proxy, the hanging listeners, the stand-in
service and the event-loop blocking guard must do what the other tests rely on."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from faults import FaultProxy, HangingListener, ThreadedFaultProxy
from helpers import StandinService, wait_until_sync

pytestmark = pytest.mark.unit


async def _echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def _round_trip(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


async def test_fault_proxy_switches_modes_at_runtime() -> None:
    server = await _echo_server()
    port = server.sockets[0].getsockname()[1]
    try:
        async with FaultProxy("127.0.0.1", port) as proxy:
            assert await _round_trip(proxy.port) == b"ping"

            await proxy.refuse()
            with pytest.raises(ConnectionRefusedError):
                await _round_trip(proxy.port)

            await proxy.hang()
            with pytest.raises(asyncio.TimeoutError):
                await _round_trip(proxy.port, timeout=0.3)

            await proxy.slow(0.3)
            started = time.perf_counter()
            assert await _round_trip(proxy.port) == b"ping"
            assert time.perf_counter() - started >= 0.55  # delayed both ways

            await proxy.pass_through()
            started = time.perf_counter()
            assert await _round_trip(proxy.port) == b"ping"
            assert time.perf_counter() - started < 0.3
    finally:
        server.close()
        await server.wait_closed()


async def test_fault_proxy_freezes_and_resets_open_connections() -> None:
    server = await _echo_server()
    port = server.sockets[0].getsockname()[1]
    try:
        async with FaultProxy("127.0.0.1", port) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"a")
            assert await reader.readexactly(1) == b"a"

            await proxy.hang()  # the open connection stops moving bytes...
            writer.write(b"b")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.readexactly(1), 0.3)
            await proxy.pass_through()  # ...and delivers them when it passes again
            assert await asyncio.wait_for(reader.readexactly(1), 2) == b"b"

            await proxy.refuse()  # as if the server died: the connection is reset
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
                writer.write(b"c")
                await writer.drain()
                await asyncio.wait_for(reader.readexactly(1), 2)
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_threaded_fault_proxy_from_sync_code() -> None:
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen()
        with ThreadedFaultProxy(*target.getsockname()) as proxy:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
            wait_until_sync(lambda: proxy.accepted == 1, message="one connection accepted")
            proxy.refuse()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
            proxy.pass_through()
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
            wait_until_sync(lambda: proxy.accepted == 2, message="two connections accepted")


def test_hanging_listener_connects_but_never_answers() -> None:
    with HangingListener() as listener:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=2) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            client.settimeout(0.3)
            with pytest.raises(TimeoutError):
                client.recv(1)


def test_hanging_listener_with_full_backlog_hangs_connect() -> None:
    with HangingListener(full_backlog=True) as listener:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            socket.create_connection(("127.0.0.1", listener.port), timeout=0.5)
        assert time.monotonic() - started >= 0.45


async def test_standin_service_modes(standin_service: StandinService) -> None:
    async with aiohttp.ClientSession() as session:

        async def get() -> tuple[int, str]:
            timeout = aiohttp.ClientTimeout(total=0.5)
            async with session.get(standin_service.url, timeout=timeout) as resp:
                return resp.status, await resp.text()

        assert await get() == (200, "ok")
        standin_service.error()
        assert (await get())[0] == 500
        standin_service.json({"status": "ok", "checks": {"db": True}})
        assert (await get())[1] == '{"status": "ok", "checks": {"db": true}}'
        standin_service.slow(0.2)
        started = time.perf_counter()
        assert (await get())[0] == 200
        assert time.perf_counter() - started >= 0.2
        standin_service.hang()
        with pytest.raises(asyncio.TimeoutError):
            await get()
        assert standin_service.hits == 5


def test_blocking_guard_fails_a_test_that_blocks_the_loop(pytester: pytest.Pytester) -> None:
    here = Path(__file__).parent
    pytester.makeconftest((here / "conftest.py").read_text())
    pytester.makepyfile(helpers=(here / "helpers.py").read_text())
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_inner="""
        import asyncio, time
        import pytest

        async def test_blocks():
            time.sleep(1.2)

        @pytest.mark.allow_blocking("checks the opt-out")
        async def test_blocks_on_purpose():
            time.sleep(1.2)

        async def test_yields():
            await asyncio.sleep(0.1)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*the event loop was blocked for more than 1s*", "*took 1.2*"])
