"""``pipeline-monitor migrate-history``: a single node's history, moved into a
group's PostgreSQL store, complete, and safe to run again."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import console_script

from recovery_webhook.store.postgres import PostgresStore
from store.test_store_migration import release_1_history

pytestmark = pytest.mark.integration


def migrate(url: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), "migrate-history", "--to", url, "--from", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_everything_moves_once_and_a_second_run_adds_only_what_is_new(
    tmp_path: Path, pg_database: str
) -> None:
    path = tmp_path / "history.sqlite3"
    release_1_history(path)  # a file of the release before schema versions
    done = await asyncio.to_thread(migrate, pg_database, path)
    assert done.returncode == 0, done.stderr
    assert "events: 1 read, 1 added" in done.stdout
    assert "alerts: 1 read, 1 added" in done.stdout
    assert "attempts: 1 read, 1 added" in done.stdout

    again = await asyncio.to_thread(migrate, pg_database, path)
    assert again.returncode == 0, again.stderr
    assert "events: 1 read, 0 added" in again.stdout
    assert "alerts: 1 read, 0 added" in again.stdout

    # The node ran on for a while before it was stopped for good.
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT INTO events (ts, kind, component, data) VALUES (200.0, 'transition',"
            ' \'database\', \'{"from": "unhealthy", "to": "healthy", "error": null}\')'
        )
    db.close()
    last = await asyncio.to_thread(migrate, pg_database, path)
    assert "events: 2 read, 1 added" in last.stdout

    store = PostgresStore(pg_database, "test")
    await store.open()
    try:
        events = await store.events.recent(10)
        assert [(e["type"], e["to"]) for e in events] == [
            ("transition", "healthy"),
            ("transition", "unhealthy"),
        ]
        (alert,) = await store.alerts.since(0)
        assert (alert.key, alert.notifications) == ("f@t", 4)
        (attempt,) = await store.attempts.recent(10)
        assert attempt.attempt_id == "database_1"
        assert await store.settings.with_prefix("manual:") == {"database": {"reason": "x"}}
        assert await store.settings.check_totals() == {"database": (40, 3)}
    finally:
        await store.close()


def test_a_wrong_target_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    release_1_history(path)
    wrong = migrate("mysql://root@127.0.0.1/test", path)
    assert wrong.returncode == 2
    assert "expected a postgresql:// URL" in wrong.stderr
    missing = migrate("postgresql://postgres@127.0.0.1:5432/test", tmp_path / "none.sqlite3")
    assert missing.returncode == 1
    assert "no history file at" in missing.stderr
