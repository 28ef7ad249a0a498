"""One suite for the store, run against both backends: a SQLite file, and a
database of its own on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from recovery_webhook.states import AttemptStatus, RepairState
from recovery_webhook.store import AlertRow, AttemptRow, ComponentSeen, LeaseLost, Store
from recovery_webhook.store.events import event_values
from recovery_webhook.store.postgres import PostgresStore
from recovery_webhook.store.sqlite import SqliteStore
from recovery_webhook.store.worker import Db

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Stores on one backing database (a second call: another monitor's)."""
    if request.param == "sqlite":
        path = tmp_path / "history.sqlite3"
        return lambda: SqliteStore(path)
    url = request.getfixturevalue("pg_database")
    return lambda: PostgresStore(url, "test")


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    yield opened
    await opened.close()


def alert(key: str, component: str = "database", status: str = "firing", **kw: Any) -> AlertRow:
    now = time.time()
    return AlertRow(
        key,
        key.split("@")[0],
        "2026-01-01T00:00:00Z",
        kw.pop("alertname", "PipelineComponentDown"),
        component,
        {"alertname": "PipelineComponentDown", "component": component},
        status,
        kw.pop("repair", RepairState.QUEUED.value),
        kw.pop("first_seen", now),
        now,
        1,
    )


def record(store: Store, *rows: AlertRow, monitor: str = "a") -> asyncio.Future[None]:
    """Queue recording ``rows`` now (as intake does); await it for the commit."""
    events = [(r.last_seen, "alert", r.component, {"status": r.status}) for r in rows]
    keys = [f"alert:{r.status}:{r.key}" for r in rows]
    return store.alerts.record(rows, [1] * len(rows), event_values(events, monitor, keys))


def attempt(component: str = "database", **kw: Any) -> AttemptRow:
    return AttemptRow(
        "",
        component,
        kw.pop("alert_key", None),
        "PipelineComponentDown",
        "alert",
        time.time(),
        None,
        AttemptStatus.RUNNING.value,
        None,
        [],
        **kw,
    )


def ids(component: str = "database") -> Callable[[], Any]:
    return lambda: (f"{component}_{n}" for n in itertools.count(int(time.time() * 1000)))


# -- schema ----------------------------------------------------------------------------


async def test_a_new_store_is_created_and_opens_again(make_store: Callable[[], Store]) -> None:
    first = make_store()
    await first.open()
    await first.events.add([(1.0, "monitor_started", None, {"version": "x"})], "a")
    await first.close()
    second = make_store()
    await second.open()
    try:
        (event,) = await second.events.recent(10)
        assert (event["type"], event["monitor"], event["version"]) == ("monitor_started", "a", "x")
        assert (
            await second.call(
                lambda db: db.one("SELECT value FROM meta WHERE key = ?", ("schema_version",))[0]
            )
            == "2"
        )
    finally:
        await second.close()


async def test_a_store_of_a_newer_release_is_refused_untouched(
    make_store: Callable[[], Store],
) -> None:
    from recovery_webhook.store import StoreTooNew

    first = make_store()
    await first.open()
    await first.call(lambda db: db.run("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    await first.close()
    second = make_store()
    with pytest.raises(StoreTooNew, match="schema version 99.*knows versions up to 2"):
        await second.open()
    await second.close()
    third = make_store()
    third.prepare = lambda db: None  # type: ignore[method-assign] # just look
    await third.open()
    try:
        found = await third.call(
            lambda db: db.one("SELECT value FROM meta WHERE key = 'schema_version'")[0]
        )
        assert found == "99"
    finally:
        await third.close()


# -- the alert ledger --------------------------------------------------------------------


async def test_an_alert_heard_by_two_monitors_is_recorded_once(
    make_store: Callable[[], Store],
) -> None:
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    try:
        row = alert("f1@t")
        await asyncio.gather(record(a, row, monitor="a"), record(b, row, monitor="b"))
        await a.alerts.add_deliveries([(3, row.last_seen + 5, row.key)])
        (stored,) = await b.alerts.since(0)
        assert (stored.key, stored.notifications, stored.repair) == ("f1@t", 5, "queued")
        assert stored.last_seen == pytest.approx(row.last_seen + 5)
        events = await a.events.recent(10, kinds=["alert"])
        assert len(events) == 1
    finally:
        await a.close()
        await b.close()


async def test_intake_never_overwrites_a_repair_and_a_resolution_ends_one_not_started(
    store: Store,
) -> None:
    running, queued = alert("r@t"), alert("q@t")
    await record(store, running, queued)
    await store.call(lambda db: db.run("UPDATE alerts SET repair = 'running' WHERE key = 'r@t'"))
    # Another monitor heard them too and still holds them as queued.
    await record(store, running, queued, monitor="b")
    await record(store, alert("r@t", status="resolved"), alert("q@t", status="resolved"))
    rows = {r.key: r for r in await store.alerts.since(0)}
    assert (rows["r@t"].status, rows["r@t"].repair) == ("resolved", "running")
    assert (rows["q@t"].status, rows["q@t"].repair) == ("resolved", "resolved")
    # A firing delivery after the resolution does not revive it.
    await record(store, alert("q@t"))
    assert (await store.alerts.get("q@t")).status == "resolved"  # type: ignore[union-attr]


async def test_back_to_back_writes_of_one_alert_merge(store: Store) -> None:
    # Queued together, they run as one statement: one row per key.
    first, resolved = alert("m@t"), alert("m@t", status="resolved")
    await asyncio.gather(record(store, first), record(store, resolved), record(store, first))
    (row,) = await store.alerts.since(0)
    assert (row.status, row.repair, row.notifications) == ("resolved", "resolved", 3)
    kinds = [e["status"] for e in await store.events.recent(10, kinds=["alert"])]
    assert sorted(kinds) == ["firing", "resolved"]


async def test_the_next_owed_repair_is_the_oldest_due_one(store: Store) -> None:
    now = time.time()
    await record(
        store,
        alert("late@t", first_seen=now - 10),
        alert("early@t", first_seen=now - 20),
        alert("other@t", component="queue", first_seen=now - 30),
    )
    await store.alerts.set_repair("early@t", RepairState.RETRY_PENDING, None, retry_at=now + 60)
    found = await store.alerts.next_owed("database", now)
    assert found is not None and found.key == "late@t"
    found = await store.alerts.next_owed("database", now + 61)
    assert found is not None and found.key == "early@t"
    owed = await store.alerts.owed()
    assert owed == {"database": None, "queue": None}


# -- leases and fencing ------------------------------------------------------------------


async def test_one_holder_at_a_time_and_a_stale_holder_cannot_write(
    make_store: Callable[[], Store],
) -> None:
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    try:
        await record(a, alert("k@t"))
        mine = await a.leases.acquire("repair:database", "a-1", "a", ttl=0.5)
        assert mine is not None and mine.token == 1
        assert await b.leases.acquire("repair:database", "b-1", "b", ttl=0.5) is None
        renewed = await a.leases.renew(mine, 0.5)
        assert renewed is not None and renewed.token == 1
        started = await a.attempts.start(attempt(alert_key="k@t"), mine, ids(), "k@t")
        assert (await a.alerts.get("k@t")).repair == "running"  # type: ignore[union-attr]

        await asyncio.sleep(0.7)  # a stalls; its lease expires; b takes over
        theirs = await b.leases.acquire("repair:database", "b-1", "b", ttl=5)
        assert theirs is not None and theirs.token == 2
        assert await a.leases.renew(mine, 0.5) is None
        with pytest.raises(LeaseLost):
            await a.attempts.end(
                AttemptRow(**{**started.__dict__, "status": "success", "ended_at": time.time()}),
                mine,
            )
        with pytest.raises(LeaseLost):
            await a.alerts.set_repair("k@t", RepairState.SUCCEEDED, mine)
        (stored,) = await b.attempts.recent(10)
        assert stored.status == "running"
        assert (await b.alerts.get("k@t")).repair == "running"  # type: ignore[union-attr]

        # The new holder ends what the old one left running.
        (ended,) = await b.attempts.interrupt("database", theirs, time.time(), "cut off")
        assert (ended.attempt_id, ended.status) == (started.attempt_id, "interrupted")
        (event,) = await b.events.recent(10, kinds=["recovery_attempt"])
        assert event["status"] == "interrupted"
        await b.leases.release(theirs)
        again = await a.leases.acquire("repair:database", "a-1", "a", ttl=5)
        assert again is not None and again.token == 3
    finally:
        await a.close()
        await b.close()


async def test_concurrent_acquirers_get_one_lease(make_store: Callable[[], Store]) -> None:
    stores = [make_store() for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        got = await asyncio.gather(
            *(s.leases.acquire("recorder", f"m{i}", f"m{i}", ttl=5) for i, s in enumerate(stores))
        )
        assert len([lease for lease in got if lease is not None]) == 1
    finally:
        for s in stores:
            await s.close()


async def test_an_attempt_starts_and_ends_whole(store: Store) -> None:
    await record(store, alert("k@t"))
    lease = await store.leases.acquire("repair:database", "h", "a", ttl=10)
    assert lease is not None
    one = await store.attempts.start(attempt(alert_key="k@t", monitor="a"), lease, ids(), "k@t")
    two = await store.attempts.start(attempt(monitor="a"), lease, ids(), None)  # the same moment
    assert one.attempt_id != two.attempt_id
    ended = AttemptRow(**{**one.__dict__, "status": "success", "ended_at": time.time()})
    await store.attempts.end(ended, lease)
    (event,) = await store.events.recent(10, kinds=["recovery_attempt"])
    assert (event["attempt_id"], event["monitor"], event["success"]) == (one.attempt_id, "a", True)
    stats = await store.attempts.stats()
    assert stats == {"success": 1, "running": 1}
    last = await store.attempts.last_per_component()
    assert last["database"].attempt_id in (one.attempt_id, two.attempt_id)


# -- the group ---------------------------------------------------------------------------


async def test_monitors_beat_with_their_view(store: Store) -> None:
    seen = {"database": ComponentSeen("unhealthy", 5.0, 4.0, "refused")}
    stamp = await store.monitors.beat("a-1", "a", 1.0, seen)
    await store.monitors.beat("b-1", "b", 2.0, {}, stopped=True)
    now, rows = await store.monitors.all()
    assert now >= stamp
    by_name = {r.name: r for r in rows}
    assert by_name["a"].view == seen and not by_name["a"].stopped
    assert by_name["b"].stopped
    await store.monitors.forget(["b-1"])
    assert [r.name for r in (await store.monitors.all())[1]] == ["a"]


async def test_a_setting_changes_once_for_the_group(store: Store) -> None:
    event = [(1.0, "escalation", "database", {"reason": "x"})]
    assert await store.settings.put("manual:database", {"since": 1}, events=event) is True
    assert await store.settings.put("manual:database", {"since": 1}, events=event) is False
    assert await store.settings.put("manual:queue", None) is False  # never set
    assert await store.settings.with_prefix("manual:") == {"database": {"since": 1}}
    assert await store.settings.put("manual:database", None) is True
    assert await store.settings.with_prefix("manual:") == {}
    assert len(await store.events.recent(10, kinds=["escalation"])) == 1


async def test_check_totals_count_each_recorder_once(store: Store) -> None:
    await store.settings.put_check_totals("a-1", {"database": (10, 2)})
    await store.settings.put_check_totals("a-1", {"database": (12, 2)})  # a repeated write
    await store.settings.put_check_totals("b-1", {"database": (5, 1), "queue": (5, 0)})
    assert await store.settings.check_totals() == {"database": (17, 3), "queue": (5, 0)}


# -- group commit -------------------------------------------------------------------------


async def test_group_commit_keeps_order_and_fails_a_call_alone(store: Store) -> None:
    def broken(db: Db) -> None:
        db.run("INSERT INTO settings VALUES ('x', 'y')")
        db.run("INSERT INTO no_such_table VALUES (1)")

    def count(db: Db) -> int:
        return int(db.one("SELECT count(*) FROM alerts")[0])

    await record(store, alert("a1@t"))
    calls = [
        record(store, alert("b1@t")),
        asyncio.ensure_future(store.call(broken)),
        record(store, alert("b2@t")),
        store.alerts.add_deliveries([(6, 2.0, "a1@t"), (8, 3.0, "b1@t")]),
        asyncio.ensure_future(store.call(count)),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] is None and results[2] is None and results[3] is None
    assert isinstance(results[1], Exception)
    assert results[4] == 3
    rows = {r.key: r.notifications for r in await store.alerts.since(0)}
    assert rows == {"a1@t": 7, "b1@t": 9, "b2@t": 1}
    assert await store.settings.get("x") is None  # the broken call left nothing
