"""The shared store goes away (refused, then hung) and comes back: reads fail at
once, writes wait in the buffer and land afterwards, in order, nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from faults import FaultProxy
from helpers import wait_until

from recovery_webhook.store import StoreUnavailable
from recovery_webhook.store.postgres import PostgresStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxied(pg_database: str) -> AsyncIterator[tuple[PostgresStore, FaultProxy]]:
    host, port = pg_database.split("@", 1)[1].split("/", 1)[0].split(":")
    async with FaultProxy(host, int(port)) as proxy:
        url = pg_database.replace(f"{host}:{port}", proxy.address)
        store = PostgresStore(url, "test")
        store.call_timeout = 1.0
        store.retry_interval = 0.2
        await store.open()
        try:
            yield store, proxy
        finally:
            await proxy.pass_through()
            await store.close()


async def test_writes_wait_out_a_refused_then_hung_store(
    proxied: tuple[PostgresStore, FaultProxy],
) -> None:
    store, proxy = proxied
    came_back = asyncio.Event()

    async def caught_up() -> None:
        came_back.set()

    store.when_available(caught_up)
    await store.events.add([(1.0, "transition", "database", {"n": 0})], "a")

    await proxy.refuse()
    for n in range(1, 4):
        await store.events.add([(1.0 + n, "transition", "database", {"n": n})], "a")
    assert not store.available
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.events.recent(10)
    assert time.monotonic() - started < 0.5  # refused at once, not after a timeout

    await proxy.hang()
    await store.events.add([(5.0, "transition", "database", {"n": 4})], "a")
    availability = store.availability()
    assert (availability.available, availability.buffered_rows) == (False, 4)

    await proxy.pass_through()
    await wait_until(came_back.is_set, timeout=10, message="the store is back")
    events = await store.events.recent(10)
    assert [e["n"] for e in reversed(events)] == [0, 1, 2, 3, 4]
    assert store.availability().available


async def test_a_call_that_hangs_is_broken_off(proxied: tuple[PostgresStore, FaultProxy]) -> None:
    store, proxy = proxied
    await proxy.hang()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.events.recent(10)
    assert time.monotonic() - started < store.call_timeout + 2
    assert not store.available
    # Writes made meanwhile are kept; the store catches up once it answers.
    await store.events.add([(1.0, "alert", "queue", {"n": 1})], "a")
    await proxy.pass_through()
    await wait_until(lambda: store.available, timeout=10, message="the store is back")
    await wait_until(lambda: not store.availability().buffered_rows, timeout=5)
    assert [e["n"] for e in await store.events.recent(10)] == [1]
