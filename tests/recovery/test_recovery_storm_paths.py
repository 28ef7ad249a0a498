"""The webhook's fast paths under an alert storm, and what they must not lose.

* A new alert, and a change of an alert's state (resolved), is in SQLite before
  the webhook answers: the real ``pipeline-monitor run`` killed with SIGKILL
  right after the answer keeps them, and a restart neither repairs the resolved
  alert again nor loses the new one.
* A pure repeat of a known alert is only counted in memory and written by a
  flusher (every ``REPEAT_FLUSH_INTERVAL`` seconds, and at stop): a crash loses
  at most the repeats' delivery counts of that last interval, nothing else.
* A repeat whose alert's first write has not committed yet (the second
  Alertmanager of an HA pair) is answered only after that write.
* Intake before repair: a queued repair starts once no notification has come
  for ``REPAIR_LULL`` and none waits for its write, or after ``repair_hold``.
* The store's group commit: calls queued together run in one transaction, in
  order; one that fails fails alone. A repair attempt starts, and ends, in one
  transaction each.
* The audit log's queued events and LogRecords write the same lines, in order.
* The payload parser's checks that are not in its schema name their field.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.audit import AuditLog
from exporter.config import AuditConfig
from recovery.recovery_support import (
    PYTHON,
    MonitorProcess,
    build_config,
    make_alert,
    payload,
    query_db,
    resolved,
    wait_until,
)
from recovery_webhook import alerts as alerts_module
from recovery_webhook import ledger as ledger_module
from recovery_webhook import repairs as repairs_module
from recovery_webhook.alerts import BodyNotJSON, ParsedBodies, PayloadError, parse_body
from recovery_webhook.store import AlertRow, AttemptRow, Store
from recovery_webhook.store.events import event_values
from recovery_webhook.store.sqlite import SqliteStore
from recovery_webhook.store.worker import Db

APPEND = "import sys; open(sys.argv[1], 'a').write('ran\\n')"
NO_RULE = "StormPathsNoRule"


def _parse(data: dict[str, Any]) -> list[Any]:
    return parse_body(json.dumps(data).encode())


def _key(alert: dict[str, Any]) -> str:
    return f"{alert['fingerprint']}@{alert['startsAt']}"


def _row(db_path: Path, alert: dict[str, Any]) -> tuple[Any, ...] | None:
    rows = query_db(
        db_path,
        "SELECT status, repair, notifications, last_seen FROM alerts WHERE key = ?",
        _key(alert),
    )
    return rows[0] if rows else None


def _runs(tmp_path: Path) -> int:
    """How many times the rule's command ran."""
    runs = tmp_path / "runs.log"
    return runs.read_text().count("ran") if runs.exists() else 0


def _config(state_dir: Path, tmp_path: Path, closed_port: int):
    return build_config(
        state_dir,
        {
            "database": {
                "probes": [{"type": "tcp", "targets": [f"127.0.0.1:{closed_port}"], "timeout": 0.5}]
            }
        },
        [
            {
                "alertname": "PipelineComponentDown",
                "component": "database",
                "actions": [
                    {
                        "type": "command",
                        "argv": [PYTHON, "-c", APPEND, str(tmp_path / "runs.log")],
                        "verify": False,
                    }
                ],
            }
        ],
        check_interval=10,
        recovery={"verify_timeout": 0.05, "verify_interval": 0.02, "retry_delay": 3600},
    )


# -- the real process, killed right after an answer --------------------------------


@pytest.mark.integration
async def test_sigkill_right_after_the_answer_keeps_new_alerts_and_states(
    tmp_path: Path, state_dir: Path, unused_port: int
) -> None:
    config = _config(state_dir, tmp_path, unused_port)
    config_file = tmp_path / "pipeline.yml"
    data = config.model_dump(mode="json", exclude={"state_dir"})
    config_file.write_text(json.dumps(data))  # JSON is YAML
    monitor = MonitorProcess(tmp_path, config_file, state_dir)
    db_path = state_dir / "history.sqlite3"
    runs = tmp_path / "runs.log"
    try:
        await monitor.start()
        repaired = make_alert("database")
        counted = make_alert("database", NO_RULE)
        fresh = make_alert("database", NO_RULE)
        async with aiohttp.ClientSession() as session:
            assert (await monitor.post_alerts(repaired, session=session))["repairs_queued"] == 1
            # Its repair fails (nothing listens on the port); the retry waits an hour.
            await wait_until(
                lambda: (_row(db_path, repaired) or ("", ""))[1] == "retry_pending",
                message="the repair failed and waits for its retry",
            )
            assert (await monitor.post_alerts(counted, session=session))["new"] == 1
            for _ in range(3):
                assert (await monitor.post_alerts(counted, session=session))["duplicates"] == 1
            assert (await monitor.post_alerts(resolved(repaired), session=session))["resolved"] == 1
            assert (await monitor.post_alerts(fresh, session=session))["new"] == 1
        await monitor.kill()  # at once: no flusher, no stop() ran after that answer

        # Everything the answers confirmed, except repeats' counts, is there.
        status, _, notifications, _ = _row(db_path, repaired) or ("", "", 0, 0)
        assert status == "resolved"
        assert notifications == 2
        assert (_row(db_path, fresh) or ("",))[0] == "firing"
        status, _, notifications, _ = _row(db_path, counted) or ("", "", 0, 0)
        assert status == "firing"
        # The documented window: the counts of the last interval's repeats.
        assert 1 <= notifications <= 4
        assert runs.read_text().splitlines() == ["ran"]

        await monitor.start()
        async with aiohttp.ClientSession() as session:
            again = await monitor.post_alerts(fresh, counted, repaired, session=session)
        # All three are known after the restart: none is new, nothing is queued.
        assert (again["new"], again["duplicates"], again["repairs_queued"]) == (0, 3, 0)
        await asyncio.sleep(1.0)  # a resumed repair would run now
        assert runs.read_text().splitlines() == ["ran"]
        assert query_db(db_path, "SELECT count(*) FROM attempts") == [(1,)]
        assert await monitor.terminate() == 0
        # A clean stop writes the counts kept in memory.
        assert (_row(db_path, fresh) or (0, 0, 0))[2] == 2
        assert (_row(db_path, counted) or (0, 0, 0))[2] == notifications + 1
    finally:
        await monitor.stop()


# -- in one process: the repeat counts' window, the HA pair ------------------------------


@pytest.mark.integration
async def test_repeats_are_counted_in_memory_and_written_by_the_flusher_and_at_stop(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int, monkeypatch
) -> None:
    monkeypatch.setattr(ledger_module, "REPEAT_FLUSH_INTERVAL", 3600.0)
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    engine = app.service.engine
    alert = make_alert("database", NO_RULE)
    before = time.time()
    assert (await app.post_alerts(alert))["new"] == 1
    # Durable before the answer: a crash from here on keeps the alert.
    status, repair, notifications, first_seen = _row(app.db_path, alert) or ("", "", 0, 0)
    assert (status, repair, notifications) == ("firing", "no_rule", 1)
    assert first_seen >= before

    for _ in range(4):
        assert (await app.post_alerts(alert))["duplicates"] == 1
    # Only in memory so far: this is what a crash now would lose (and only this).
    assert (_row(app.db_path, alert) or ())[2] == 1
    await engine.ledger.flush_repeats()
    _, _, notifications, last_seen = _row(app.db_path, alert) or ("", "", 0, 0)
    assert notifications == 5
    assert last_seen > first_seen

    assert (await app.post_alerts(alert))["duplicates"] == 1
    await app.stop()  # the flusher's last round
    assert (_row(app.db_path, alert) or ())[2] == 6


@pytest.mark.integration
async def test_the_flusher_writes_repeats_within_its_interval(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int, monkeypatch
) -> None:
    monkeypatch.setattr(ledger_module, "REPEAT_FLUSH_INTERVAL", 0.1)
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    alert = make_alert("database", NO_RULE)
    for _ in range(3):
        await app.post_alerts(alert)
    await wait_until(
        lambda: (_row(app.db_path, alert) or (0, 0, 0))[2] == 3,
        timeout=2,
        message="the repeats' count is written",
    )


def _hold_alert_writes(store: Store) -> list[asyncio.Event]:
    """Alert writes of ``store`` commit, but each says so only once its own
    event, added to the list as the write is submitted, is set."""
    loop = asyncio.get_running_loop()
    gates: list[asyncio.Event] = []
    submit = store.alerts.record

    def held(rows: Any, deliveries: Any, events: Any) -> asyncio.Future[None]:
        inner = submit(rows, deliveries, events)
        outer: asyncio.Future[None] = loop.create_future()
        gate = asyncio.Event()
        gates.append(gate)

        async def release() -> None:
            await gate.wait()
            outer.set_result(await inner)

        asyncio.ensure_future(release())
        return outer

    store.alerts.record = held  # type: ignore[method-assign]
    return gates


@pytest.mark.integration
async def test_new_alerts_and_resolutions_wait_for_their_write_repeats_do_not(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int
) -> None:
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    engine = app.service.engine
    known, other = make_alert("database", NO_RULE), make_alert("database", NO_RULE)
    await app.post_alerts(known, other)
    gates = _hold_alert_writes(app.service.store)

    new = asyncio.ensure_future(engine.receive(_parse(payload(make_alert("database")))))
    ending = asyncio.ensure_future(engine.receive(_parse(payload(resolved(known)))))
    await asyncio.sleep(0.2)
    assert not new.done() and not ending.done()
    # A pure repeat of a recorded alert, in its state, is only counted: answered now.
    result = await asyncio.wait_for(engine.receive(_parse(payload(other))), timeout=0.5)
    assert (result.new, result.duplicates) == (0, 1)
    assert len(gates) == 2
    for gate in gates:
        gate.set()
    assert (await new).new == 1 and (await ending).resolved == 1


@pytest.mark.integration
async def test_a_repeat_is_answered_only_after_its_alerts_first_write(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int
) -> None:
    """Two Alertmanagers send a new alert at once: the second delivery is a repeat,
    and must not be answered before the first one's write has committed."""
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    engine = app.service.engine
    gates = _hold_alert_writes(app.service.store)
    alerts = _parse(payload(make_alert("database", NO_RULE)))
    first = asyncio.ensure_future(engine.receive(alerts))
    second = asyncio.ensure_future(engine.receive(_parse(payload(*alerts))))
    await asyncio.sleep(0.2)
    assert not first.done() and not second.done()
    (gate,) = gates  # the repeat wrote nothing: it waits for the first write
    gate.set()
    one, two = await asyncio.gather(first, second)
    assert (one.new, one.duplicates, two.new, two.duplicates) == (1, 0, 0, 1)


@pytest.mark.integration
async def test_repairs_start_once_no_notification_waits_for_its_write(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int
) -> None:
    """Answers first: the repair a committed notification queued waits while
    another notification's alerts are still being written, then starts."""
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    engine = app.service.engine
    engine.queue.repair_hold = 3600  # only the end of intake can start it
    gates = _hold_alert_writes(app.service.store)
    first = asyncio.ensure_future(engine.receive(_parse(payload(make_alert("database")))))
    second = asyncio.ensure_future(engine.receive(_parse(payload(make_alert("database")))))
    await wait_until(lambda: len(gates) == 2, timeout=2, message="both writes submitted")
    gates[0].set()
    assert (await asyncio.wait_for(first, timeout=2)).repairs_queued == 1
    await asyncio.sleep(0.3)
    assert not second.done()
    assert await app.attempts() == [] and _runs(tmp_path) == 0
    gates[1].set()
    assert (await asyncio.wait_for(second, timeout=2)).repairs_queued == 1
    await wait_until(
        lambda: _runs(tmp_path) == 2, timeout=10, message="both held repairs start and run"
    )


@pytest.mark.integration
async def test_repairs_wait_while_notifications_keep_coming(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int, monkeypatch
) -> None:
    monkeypatch.setattr(repairs_module, "REPAIR_LULL", 1.0)
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    engine = app.service.engine
    engine.queue.repair_hold = 3600
    assert (await app.post_alerts(make_alert("database")))["repairs_queued"] == 1
    other = make_alert("database", NO_RULE)
    for _ in range(15):  # a notification every 0.1 s for 1.5 s: never a lull of 1 s
        await app.post_alerts(other)
        await asyncio.sleep(0.1)
        assert _runs(tmp_path) == 0
    await wait_until(lambda: _runs(tmp_path) == 1, timeout=5, message="the repair after the lull")


@pytest.mark.integration
async def test_held_repairs_start_after_repair_hold_even_while_intake_goes_on(
    app_factory, state_dir: Path, tmp_path: Path, unused_port: int
) -> None:
    app = await app_factory(_config(state_dir, tmp_path, unused_port))
    engine = app.service.engine
    engine.queue.repair_hold = 0.2
    gates = _hold_alert_writes(app.service.store)
    first = asyncio.ensure_future(engine.receive(_parse(payload(make_alert("database")))))
    stuck = asyncio.ensure_future(engine.receive(_parse(payload(make_alert("database")))))
    await wait_until(lambda: len(gates) == 2, timeout=2, message="both writes submitted")
    gates[0].set()
    await asyncio.wait_for(first, timeout=2)
    await wait_until(lambda: _runs(tmp_path) == 1, timeout=5, message="the first repair runs")
    assert not stuck.done()
    gates[1].set()
    await asyncio.wait_for(stuck, timeout=2)


# -- history: group commit ---------------------------------------------------------------


def _alert_row(key: str, notifications: int = 1) -> AlertRow:
    labels = {"alertname": "A", "component": "database", "note": "é ☃"}
    return AlertRow(
        key, "fp", "t", "A", "database", labels, "firing", "queued", 1.0, 1.0, notifications
    )


def _record(store: Store, rows: list[AlertRow], events: list[Any]) -> asyncio.Future[None]:
    return store.alerts.record(rows, [r.notifications for r in rows], event_values(events, "m"))


@pytest.mark.unit
async def test_store_group_commit_keeps_order_and_fails_a_call_alone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "history.sqlite3")
    await store.open()
    try:
        # 200 rows in one call: multi-row statements of 64, 64, 64 and 8 rows.
        await _record(
            store,
            [_alert_row(f"a{i}") for i in range(200)],
            [(1.0, "alert", "database", {"i": i, "path": tmp_path}) for i in range(70)],
        )

        def broken(db: Db) -> None:
            db.run("INSERT INTO no_such_table VALUES (1)")

        def notifications(db: Db) -> int:
            return int(db.one("SELECT notifications FROM alerts WHERE key = 'b1'")[0])

        # Queued together: one batch, in order; the broken call fails alone.
        calls = [
            _record(store, [_alert_row("b1")], []),
            store._worker.submit(broken),
            _record(store, [_alert_row("b2")], []),
            store.alerts.add_deliveries([(6, 2.0, "a1"), (8, 3.0, "b1")]),
            store._worker.submit(notifications),
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None
        assert isinstance(outcomes[1], sqlite3.OperationalError)
        assert outcomes[4] == 9  # the deliveries before it, in the same transaction
        count = await store.call(lambda db: db.one("SELECT count(*) FROM alerts")[0])
        assert count == 202
        by_key = {row.key: row for row in await store.alerts.since(0)}
        assert (by_key["a1"].notifications, by_key["a1"].last_seen) == (7, 2.0)
        assert by_key["a2"].notifications == 1
        assert by_key["b2"].labels == {"alertname": "A", "component": "database", "note": "é ☃"}
        events = await store.events.recent(100, kinds=["alert"])
        assert sorted(e["i"] for e in events) == list(range(70))
        assert events[0]["path"] == str(tmp_path)
    finally:
        await store.close()


@pytest.mark.unit
async def test_an_attempt_starts_and_ends_in_one_transaction_each(tmp_path: Path) -> None:
    """A repair's first write takes a free id and marks its alert running; its
    last stores the end and the feed's event."""
    path = tmp_path / "history.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        await _record(store, [_alert_row("k")], [])

        def ids() -> list[str]:
            return [f"database_{stamp}" for stamp in range(1000, 1010)]

        def refuse(table: str, event: str) -> None:
            db = sqlite3.connect(path)
            with db:
                db.execute(
                    f"CREATE TRIGGER refuse BEFORE {event} ON {table}"
                    " BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            db.close()

        def allow() -> None:
            db = sqlite3.connect(path)
            with db:
                db.execute("DROP TRIGGER refuse")
            db.close()

        first = AttemptRow("", "database", "k", "A", "alert", 1.0, None, "running", None, [])
        # All of it or nothing: the alert cannot be marked, so no attempt is stored.
        refuse("alerts", "UPDATE")
        with pytest.raises(sqlite3.IntegrityError):
            await store.attempts.start(first, None, ids, "k")
        assert await store.attempts.recent(10) == []
        allow()
        one = await store.attempts.start(first, None, ids, "k")
        two = await store.attempts.start(first, None, ids, None)  # the same moment
        assert (one.attempt_id, two.attempt_id) == ("database_1000", "database_1001")
        assert (await store.alerts.since(0))[0].repair == "running"
        assert await store.events.recent(10, kinds=["recovery_attempt"]) == []
        ended = replace(one, ended_at=2.5, status="failure", error="still down")
        # No event, no end: the attempt stays running (the next holder of the
        # lease marks it interrupted).
        refuse("events", "INSERT")
        with pytest.raises(sqlite3.IntegrityError):
            await store.attempts.end(ended, None)
        stored = {a.attempt_id: a for a in await store.attempts.recent(10)}
        assert stored["database_1000"].status == "running"
        allow()
        await store.attempts.end(ended, None)
        (event,) = await store.events.recent(10, kinds=["recovery_attempt"])
        assert (event["attempt_id"], event["status"], event["duration_ms"]) == (
            "database_1000",
            "failure",
            1500.0,
        )
        stored = {a.attempt_id: a for a in await store.attempts.recent(10)}
        assert stored["database_1000"].status == "failure"
        assert stored["database_1001"].status == "running"
    finally:
        await store.close()


# -- the audit log: queued from the loop, written in order, one event per line --------

LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - (?P<logger>[\w.]+) - "
    r"(?P<level>[A-Z]+) - (?P<event>[A-Z_]+): (?P<payload>.*)$"
)


@pytest.mark.unit
def test_audit_lines_keep_their_order_and_stay_one_per_event(tmp_path: Path) -> None:
    name = f"test.audit.{uuid.uuid4().hex}"
    audit = AuditLog(AuditConfig(file=tmp_path / "audit.log"), stream=False, name=name)
    other = AuditLog(AuditConfig(file=tmp_path / "other.log"), stream=False, name=name)
    try:
        for i in range(300):
            audit.alert_triggered("database", "critical", alertname="A", fingerprint=f"f{i}")
        audit.failure_detected("database", "line one\nERROR - FAILURE_DETECTED: forged")
        other.alert_resolved("queue", alertname="B", fingerprint="g")
    finally:
        audit.close()
        other.close()
    lines = (tmp_path / "audit.log").read_text().splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches) and len(matches) == 301
    assert [m["payload"] for m in matches[:300] if m] == [
        f"component=database, severity=CRITICAL, alertname=A, fingerprint=f{i}" for i in range(300)
    ]
    last = matches[300]
    assert last is not None and (last["level"], last["event"]) == ("ERROR", "FAILURE_DETECTED")
    # A line break in a value cannot start a forged line: the value is a JSON string.
    assert last["payload"] == (
        'component=database, error="line one\\nERROR - FAILURE_DETECTED: forged"'
    )
    # Each AuditLog writes only its own events.
    assert "fingerprint=g" not in "\n".join(lines)
    assert "fingerprint=g" in (tmp_path / "other.log").read_text()


# -- the parser's own checks ---------------------------------------------------------------


def _body(**changes: Any) -> bytes:
    alert = make_alert("database")
    alert.update(changes)
    return json.dumps(payload(alert)).encode()


@pytest.mark.unit
@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"labels": {"component": "database"}}, "alerts.0.labels", "alertname is missing"),
        (
            {"labels": {"alertname": "A", **{f"l{i}": "v" for i in range(64)}}},
            "alerts.0.labels",
            "more than 64 labels",
        ),
        ({"startsAt": "2024-02-30T10:00:00Z"}, "alerts.0.startsAt", "not an RFC 3339"),
        ({"startsAt": "2024-05-06"}, "alerts.0.startsAt", "not an RFC 3339"),
        ({"startsAt": "２０２４-05-06T10:00:00Z"}, "alerts.0.startsAt", "not an RFC 3339"),
        ({"startsAt": 7}, "alerts.0.startsAt", "valid string"),
        ({"fingerprint": ""}, "alerts.0.fingerprint", "at least 1"),
    ],
)
def test_the_parser_names_the_field(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_body(_body(**changes))
    assert caught.value.field == field
    assert message in caught.value.message


@pytest.mark.unit
def test_the_parser_takes_what_alertmanager_sends() -> None:
    body = _body(startsAt="2024-05-06T10:00:00.123456789+02:00")
    (alert,) = parse_body(body)
    assert alert["startsAt"] == "2024-05-06T10:00:00.123456789+02:00"
    assert alert["labels"]["alertname"] == "PipelineComponentDown"
    # Another body with the same startsAt, which is now known to be a real time.
    (again,) = parse_body(_body(startsAt=alert["startsAt"], fingerprint="another"))
    assert again["fingerprint"] == "another"
    assert again["startsAt"] == alert["startsAt"]


# -- the parse cache: a body seen before is not parsed again ------------------------------


@pytest.mark.unit
def test_a_repeated_body_is_validated_once_and_shared() -> None:
    fingerprint = uuid.uuid4().hex[:16]
    body = _body(fingerprint=fingerprint)
    first = parse_body(body)
    assert isinstance(first, tuple)  # shared between notifications: read-only
    # The bytes of another request (a new object, as aiohttp reads each body).
    assert parse_body(bytes(bytearray(body))) is first
    # One byte different is another body, parsed on its own.
    changed = body.replace(fingerprint.encode(), fingerprint[:-1].encode() + b"x")
    assert parse_body(changed) is not first
    assert parse_body(changed)[0]["fingerprint"] == fingerprint[:-1] + "x"


@pytest.mark.unit
def test_a_bad_body_is_refused_every_time_and_never_kept() -> None:
    bad = _body(startsAt="2024-02-30T10:00:00Z")
    kept = len(alerts_module.PARSED)
    for _ in range(2):
        with pytest.raises(PayloadError):
            parse_body(bad)
        with pytest.raises(BodyNotJSON):
            parse_body(b"{not json")
    assert len(alerts_module.PARSED) == kept


@pytest.mark.unit
def test_the_parse_cache_is_bounded_by_bodies_and_bytes() -> None:
    cache = ParsedBodies(max_bodies=3, max_bytes=800)
    bodies = [bytes([65 + i]) * 100 for i in range(5)]
    for body in bodies[:3]:
        cache.put(body, ())
    assert cache.get(bodies[0]) == ()  # now the most recently used
    cache.put(bodies[3], ())  # pushes out the least recently used: bodies[1]
    assert cache.get(bodies[1]) is None
    assert cache.get(bodies[0]) == () and cache.get(bodies[2]) == ()
    assert len(cache) == 3 and cache.bytes == 300
    cache.put(b"x" * 101, ())  # over an eighth of the byte bound: not kept
    assert cache.get(b"x" * 101) is None and len(cache) == 3
    big = ParsedBodies(max_bodies=100, max_bytes=800)
    for body in bodies:
        big.put(body, ())
    for body in [bytes([75 + i]) * 100 for i in range(5)]:
        big.put(body, ())
    assert big.bytes <= 800 and len(big) == 8
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
