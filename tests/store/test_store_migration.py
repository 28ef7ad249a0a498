"""A history file written by the release before schema versions opens and migrates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from recovery_webhook.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

# The schema of that release, as its history.py created it.
RELEASE_1 = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, component TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_kind_component_ts ON events (kind, component, ts);
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL, component TEXT, labels TEXT NOT NULL, status TEXT NOT NULL,
    repair TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    notifications INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id TEXT PRIMARY KEY, component TEXT NOT NULL, alert_key TEXT, alertname TEXT,
    trigger TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, status TEXT NOT NULL,
    error TEXT, actions TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_component_started ON attempts (component, started_at);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS check_counts (
    component TEXT PRIMARY KEY, checks INTEGER NOT NULL, failures INTEGER NOT NULL
);
"""


def release_1_history(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(RELEASE_1)
    db.execute(
        "INSERT INTO events VALUES (1, 100.0, 'transition', 'database', ?)",
        ('{"from": "healthy", "to": "unhealthy", "error": "refused"}',),
    )
    db.execute(
        "INSERT INTO alerts VALUES ('f@t', 'f', 't', 'PipelineComponentDown', 'database',"
        " '{\"alertname\": \"PipelineComponentDown\"}', 'firing', 'queued', 100, 101, 4)"
    )
    db.execute(
        "INSERT INTO attempts VALUES ('database_1', 'database', 'f@t', 'PipelineComponentDown',"
        " 'alert', 100, 101, 'failure', 'still down', '[]')"
    )
    db.execute("INSERT INTO settings VALUES ('manual:database', '{\"reason\": \"x\"}')")
    db.execute("INSERT INTO settings VALUES ('heartbeat', '150.5')")
    db.execute("INSERT INTO check_counts VALUES ('database', 40, 3)")
    db.commit()
    db.close()


async def test_a_release_1_history_opens_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    release_1_history(path)
    store = SqliteStore(path)
    await store.open()
    try:
        (event,) = await store.events.recent(10)
        assert (event["id"], event["type"], event["error"]) == (1, "transition", "refused")
        (alert,) = await store.alerts.since(0)
        assert (alert.key, alert.repair, alert.notifications) == ("f@t", "queued", 4)
        (attempt,) = await store.attempts.recent(10)
        assert (attempt.attempt_id, attempt.status, attempt.monitor) == (
            "database_1",
            "failure",
            None,
        )
        assert await store.settings.with_prefix("manual:") == {"database": {"reason": "x"}}
        assert await store.settings.check_totals() == {"database": (40, 3)}
        # The last heartbeat of that release: a monitor that never said goodbye.
        _, monitors = await store.monitors.all()
        assert [(m.last_seen, m.stopped) for m in monitors] == [(150.5, False)]
        assert await store.settings.get("heartbeat") is None
    finally:
        await store.close()
    again = SqliteStore(path)  # and once more: nothing migrates twice
    await again.open()
    try:
        assert await again.settings.check_totals() == {"database": (40, 3)}
    finally:
        await again.close()
