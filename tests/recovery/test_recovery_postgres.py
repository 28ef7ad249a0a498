"""``postgres_terminate`` ends a real session that holds the canary row hostage.

A separate connection BEGINs, locks the write canary's row and goes idle: the
probe's write canary waits on the lock until its lock_timeout, so the database
is unhealthy. The repair terminates that session, and only that one: a session
that calls itself ``pipeline-monitor`` (the monitor's own) survives although it
is idle in a transaction too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from exporter.probes.postgres import APPLICATION_NAME, CANARY_TABLE
from recovery.recovery_support import build_config, make_alert, rule, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def canary_row(pg_dsn: str) -> AsyncIterator[str]:
    """The canary table with row 1; dropped at the end unless it was there before."""
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        existed = (
            await (await conn.execute("SELECT to_regclass(%s)", (CANARY_TABLE,))).fetchone()
        )[0] is not None
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CANARY_TABLE}"
            " (id int PRIMARY KEY, checked_at timestamptz NOT NULL)"
        )
        await conn.execute(
            f"INSERT INTO {CANARY_TABLE} VALUES (1, now()) ON CONFLICT (id) DO NOTHING"
        )
    yield pg_dsn
    if not existed:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {CANARY_TABLE}")


async def _backends(dsn: str, application_name: str) -> set[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
        ).fetchall()
    return {int(r[0]) for r in rows}


async def test_terminate_ends_an_idle_in_transaction_lock_holder(
    app_factory, state_dir, canary_row
):
    dsn = canary_row
    config = build_config(
        state_dir,
        {
            "database": {
                "probes": [{"type": "postgres", "dsn": dsn, "write_canary": True, "timeout": 0.8}]
            }
        },
        [rule("database", {"type": "postgres_terminate", "older_than": 0.5})],
    )
    app = await app_factory(config)
    await wait_until(lambda: _is(app, "healthy"), message="database healthy")

    blocker = await psycopg.AsyncConnection.connect(dsn, application_name="test-blocker")
    # Idle in a transaction like the monitor's own session might be: must be spared.
    own = await psycopg.AsyncConnection.connect(dsn, application_name=APPLICATION_NAME)
    try:
        await blocker.execute(f"SELECT * FROM {CANARY_TABLE} WHERE id = 1 FOR UPDATE")
        await own.execute("SELECT 1")
        blocker_pid, own_pid = blocker.info.backend_pid, own.info.backend_pid

        await wait_until(lambda: _is(app, "unhealthy"), message="the write canary fails")
        error = (await app.status())["component_details"]["database"]["error"]
        # statement_timeout and lock_timeout are equal: either may cancel the wait.
        assert "timeout" in error and CANARY_TABLE in error, error

        await app.post_alerts(make_alert("database"))
        events = await wait_until(
            lambda: _attempt_events(app), timeout=20, message="the repair is in history"
        )
        (event,) = events
        assert event["status"] == "success", event
        (action,) = event["actions"]
        assert action["action"] == "postgres_terminate"
        assert action["verified"] is True
        assert f"pid {blocker_pid} " in action["output"]
        assert "terminated 1 session(s)" in action["output"]
        assert f"pid {own_pid} " not in action["output"]

        assert await app.component_status("database") == "healthy"
        # The blocker's server side is gone; the monitor-named session is not.
        assert blocker_pid not in await _backends(dsn, "test-blocker")
        assert own_pid in await _backends(dsn, APPLICATION_NAME)
        with pytest.raises(psycopg.OperationalError):
            await blocker.execute("SELECT 1")
        await own.execute("SELECT 1")  # still usable
    finally:
        await blocker.close()
        await own.rollback()
        await own.close()


async def _is(app, status: str) -> bool:
    return await app.component_status("database") == status


async def _attempt_events(app) -> list[dict]:
    return [e for e in await app.history() if e["type"] == "recovery_attempt"]
