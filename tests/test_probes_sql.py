"""postgres and mysql probes against the real PostgreSQL and MariaDB servers.

Faults are real: a port where nothing listens, a FaultProxy that refuses or
freezes an open connection, a silent listener, a role or database that does not
exist, a wrong password, a database that refuses writes, connections opened to
push the server over the connection-use thresholds.

PostgreSQL on this host trusts 127.0.0.1 (pg_hba ``trust``), so it ignores
passwords: a *wrong password* cannot be produced there without reconfiguring the
shared server; a role and a database that do not exist stand in for bad
credentials, and MariaDB covers the wrong password for real.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import psycopg
import pymysql
import pytest
from faults import FaultProxy, HangingListener
from helpers import Harness, assert_no_secret, host_port, mysql_admin, wait_until, with_netloc

from exporter.model import ProbeResult, Status
from exporter.probes.mysql import connect_args
from exporter.probes.postgres import CANARY_TABLE

pytestmark = pytest.mark.integration

SLACK = 0.5
TIMED_OUT = re.compile(r"timed out|no answer|timeout", re.IGNORECASE)
PASSWORD = "Pr0be-pw!x"

Probes = Callable[..., Harness]


def measured(result: ProbeResult) -> dict[str, float]:
    return {m.metric: m.value for m in result.measurements}


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A fresh database (DSN), dropped with its connections afterwards."""
    name = f"pm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield with_netloc(pg_dsn, path=f"/{name}")
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_postgres_healthy(probe_harness: Probes, pg_dsn: str) -> None:
    run = await probe_harness({"type": "postgres", "dsn": pg_dsn}).run()
    assert run.result.status is Status.HEALTHY, run.result
    gauges = measured(run.result)
    assert gauges["database_connections"] >= 1  # the probe's own, at least
    assert gauges["database_max_connections"] >= 10
    assert gauges["database_in_recovery"] == 0
    assert re.fullmatch(r"\d+ of \d+ connections in use", run.result.detail or "")


async def test_postgres_refused_and_password_hidden(
    probe_harness: Probes, unused_port: int
) -> None:
    url_dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{unused_port}/test"
    keyword_dsn = f"host=127.0.0.1 port={unused_port} user=postgres password={PASSWORD}"
    for dsn in (url_dsn, keyword_dsn):
        run = await probe_harness({"type": "postgres", "dsn": dsn}).run()
        assert run.result.status is Status.UNHEALTHY
        assert "Connection refused" in (run.result.error or ""), run.result.error
        assert_no_secret(run.result.error, PASSWORD)


async def test_postgres_unknown_role_and_database(probe_harness: Probes, pg_dsn: str) -> None:
    role = with_netloc(pg_dsn, user="no_such_role", password=PASSWORD)
    run = await probe_harness({"type": "postgres", "dsn": role}).run()
    assert run.result.status is Status.UNHEALTHY
    assert 'role "no_such_role" does not exist' in (run.result.error or ""), run.result.error
    assert_no_secret(run.result.error, PASSWORD)

    database = with_netloc(pg_dsn, password=PASSWORD, path="/no_such_database")
    run = await probe_harness({"type": "postgres", "dsn": database}).run()
    assert run.result.status is Status.UNHEALTHY
    assert 'database "no_such_database" does not exist' in (run.result.error or "")
    assert_no_secret(run.result.error, PASSWORD)


async def test_postgres_silent_server_ends_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener() as listener:
        dsn = f"postgresql://postgres:{PASSWORD}@{listener.address}/test"
        run = await probe_harness({"type": "postgres", "dsn": dsn, "timeout": 0.5}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert run.result.error == "no answer within 0.5s (timed out)"


async def test_postgres_frozen_connection_ends_at_the_timeout_and_recovers(
    probe_harness: Probes, pg_dsn: str
) -> None:
    """The probe keeps its connection; freeze it mid-life, as a hung server would.

    psycopg answers a cancelled query by asking the server to cancel it (for up to
    10 s): the verdict must not wait for that.
    """
    async with FaultProxy(*host_port(pg_dsn)) as proxy:
        harness = probe_harness(
            {"type": "postgres", "dsn": with_netloc(pg_dsn, port=proxy.port), "timeout": 0.5}
        )
        assert (await harness.run()).result.status is Status.HEALTHY

        await proxy.hang()
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 0.5 + SLACK
        assert run.result.error == "no answer within 0.5s (timed out)"
        # psycopg's cancel request hangs too: the next run finds the first still
        # unwinding, waits for it within its own budget and says so.
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 0.5 + SLACK
        assert run.result.error == (
            "no answer within 0.5s (timed out; the previous run has not ended yet)"
        )

        await proxy.pass_through()

        async def healthy() -> bool:
            return (await harness.run()).result.status is Status.HEALTHY

        await wait_until(healthy, timeout=12, message="the probe recovering")


async def test_postgres_slow_server_is_degraded(probe_harness: Probes, pg_dsn: str) -> None:
    async with FaultProxy(*host_port(pg_dsn)) as proxy:
        await proxy.slow(0.1)  # every chunk, both ways: several round trips per run
        run = await probe_harness(
            {
                "type": "postgres",
                "dsn": with_netloc(pg_dsn, port=proxy.port),
                "timeout": 5,
                "latency_degraded": 0.3,
            }
        ).run()
    assert run.result.status is Status.DEGRADED, run.result
    assert re.fullmatch(
        r"slow: answered in \d\.\d{3}s, over the 0\.3s threshold", run.result.error or ""
    ), run.result.error
    assert run.component.up


async def test_postgres_server_gone_then_back(probe_harness: Probes, pg_dsn: str) -> None:
    async with FaultProxy(*host_port(pg_dsn)) as proxy:
        harness = probe_harness(
            {"type": "postgres", "dsn": with_netloc(pg_dsn, port=proxy.port), "timeout": 1}
        )
        assert (await harness.run()).result.status is Status.HEALTHY
        await proxy.refuse()  # resets the probe's open connection too
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.result.error, run.result
        run = await harness.run()
        assert "Connection refused" in (run.result.error or ""), run.result.error
        await proxy.pass_through()
        run = await harness.run()
        assert run.result.status is Status.HEALTHY, run.result


async def test_postgres_connection_use_thresholds(probe_harness: Probes, pg_dsn: str) -> None:
    baseline = measured((await probe_harness({"type": "postgres", "dsn": pg_dsn}).run()).result)
    used, limit = baseline["database_connections"], baseline["database_max_connections"]
    extra = 10
    assert used + extra < limit * 0.9, "the server is too busy for this test"
    # Thresholds between the baseline and the baseline plus our connections, with
    # room for a few connections that other clients open or close meanwhile.
    above_baseline = (used + 5) / limit
    degraded = probe_harness(
        {"type": "postgres", "dsn": pg_dsn, "connections_degraded": above_baseline}
    )
    unhealthy = probe_harness(
        {
            "type": "postgres",
            "dsn": pg_dsn,
            "connections_degraded": above_baseline / 2,
            "connections_unhealthy": above_baseline,
        }
    )
    assert (await degraded.run()).result.status is Status.HEALTHY

    connections = [await psycopg.AsyncConnection.connect(pg_dsn) for _ in range(extra)]
    try:
        run = await degraded.run()
        assert run.result.status is Status.DEGRADED, run.result
        assert re.fullmatch(r"\d+ of \d+ connections in use \(\d+%\)", run.result.error or "")
        assert measured(run.result)["database_connections"] >= used + extra - 2

        run = await unhealthy.run()
        assert run.result.status is Status.UNHEALTHY, run.result
        assert (run.result.error or "").endswith("near the limit")
    finally:
        for conn in connections:
            await conn.close()

    async def healthy_again() -> bool:  # backends exit a moment after their client
        return (await degraded.run()).result.status is Status.HEALTHY

    await wait_until(healthy_again, message="connection use back under the threshold")


async def test_postgres_write_canary(probe_harness: Probes, pg_database: str) -> None:
    run = await probe_harness({"type": "postgres", "dsn": pg_database, "write_canary": True}).run()
    assert run.result.status is Status.HEALTHY, run.result
    async with await psycopg.AsyncConnection.connect(pg_database) as conn:
        cur = await conn.execute(
            f"SELECT id, now() - checked_at < interval '1 minute' FROM {CANARY_TABLE}"
        )
        assert await cur.fetchall() == [(1, True)]


async def test_postgres_write_canary_on_a_read_only_database(
    probe_harness: Probes, pg_database: str
) -> None:
    name = pg_database.rsplit("/", 1)[1]
    async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as conn:
        await conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    without = await probe_harness({"type": "postgres", "dsn": pg_database}).run()
    assert without.result.status is Status.HEALTHY  # reads still work
    run = await probe_harness({"type": "postgres", "dsn": pg_database, "write_canary": True}).run()
    assert run.result.status is Status.UNHEALTHY
    assert "read-only transaction" in (run.result.error or ""), run.result.error


# -- MariaDB / MySQL ---------------------------------------------------------------------


@pytest.fixture
def mysql_database(mysql_dsn: str) -> Iterator[str]:
    name = f"pm_test_{uuid.uuid4().hex[:12]}"
    with mysql_admin(mysql_dsn) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with mysql_admin(mysql_dsn) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


async def test_mysql_healthy(probe_harness: Probes, mysql_dsn: str) -> None:
    run = await probe_harness({"type": "mysql", "dsn": mysql_dsn}).run()
    assert run.result.status is Status.HEALTHY, run.result
    gauges = measured(run.result)
    assert gauges["database_connections"] >= 1
    assert gauges["database_max_connections"] >= 10
    assert gauges["database_in_recovery"] == 0


async def test_mysql_refused_and_password_hidden(probe_harness: Probes, unused_port: int) -> None:
    dsn = f"mysql://root:{quote(PASSWORD)}@127.0.0.1:{unused_port}/test"
    run = await probe_harness({"type": "mysql", "dsn": dsn}).run()
    assert run.result.status is Status.UNHEALTHY
    assert "Connection refused" in (run.result.error or ""), run.result.error
    assert_no_secret(run.result.error, PASSWORD, quote(PASSWORD))


async def test_mysql_wrong_password(
    probe_harness: Probes, mysql_dsn: str, mysql_user: Callable[..., str]
) -> None:
    # A password that needs percent-encoding in a URL: both spellings stay hidden.
    password = "p@ss:w/rd%1"
    user = mysql_user(password)
    good = with_netloc(mysql_dsn, user=user, password=quote(password, safe=""))
    assert (await probe_harness({"type": "mysql", "dsn": good}).run()).result.status is (
        Status.HEALTHY
    )
    wrong = with_netloc(mysql_dsn, user=user, password=quote(password + "x", safe=""))
    run = await probe_harness({"type": "mysql", "dsn": wrong}).run()
    assert run.result.status is Status.UNHEALTHY
    assert f"Access denied for user '{user}'" in (run.result.error or ""), run.result.error
    assert_no_secret(run.result.error, password, quote(password, safe=""), password + "x")


async def test_mysql_unknown_database(probe_harness: Probes, mysql_dsn: str) -> None:
    run = await probe_harness(
        {"type": "mysql", "dsn": with_netloc(mysql_dsn, path="/no_such_database")}
    ).run()
    assert run.result.status is Status.UNHEALTHY
    assert "Unknown database 'no_such_database'" in (run.result.error or "")


async def test_mysql_silent_server_ends_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener() as listener:
        dsn = f"mysql://root:{PASSWORD}@{listener.address}/test"
        run = await probe_harness({"type": "mysql", "dsn": dsn, "timeout": 0.5}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert run.result.error == "no answer within 0.5s (timed out)"


async def test_mysql_frozen_server_ends_at_the_timeout(
    probe_harness: Probes, mysql_dsn: str
) -> None:
    async with FaultProxy(*host_port(mysql_dsn)) as proxy:
        harness = probe_harness(
            {"type": "mysql", "dsn": with_netloc(mysql_dsn, port=proxy.port), "timeout": 0.5}
        )
        assert (await harness.run()).result.status is Status.HEALTHY
        await proxy.hang()
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 0.5 + SLACK
        assert TIMED_OUT.search(run.result.error or ""), run.result.error
        await proxy.pass_through()
        assert (await harness.run()).result.status is Status.HEALTHY


async def test_mysql_connection_use_thresholds(probe_harness: Probes, mysql_dsn: str) -> None:
    baseline = measured((await probe_harness({"type": "mysql", "dsn": mysql_dsn}).run()).result)
    used, limit = baseline["database_connections"], baseline["database_max_connections"]
    harness = probe_harness(
        {"type": "mysql", "dsn": mysql_dsn, "connections_degraded": (used + 5) / limit}
    )
    assert (await harness.run()).result.status is Status.HEALTHY
    args = connect_args(mysql_dsn, 5)
    connections = await asyncio.gather(
        *(asyncio.to_thread(pymysql.connect, **args) for _ in range(10))
    )
    try:
        run = await harness.run()
        assert run.result.status is Status.DEGRADED, run.result
        assert measured(run.result)["database_connections"] >= used + 8
    finally:
        for conn in connections:
            conn.close()


async def test_mysql_write_canary(
    probe_harness: Probes,
    mysql_dsn: str,
    mysql_database: str,
    mysql_user: Callable[..., str],
) -> None:
    dsn = with_netloc(mysql_dsn, path=f"/{mysql_database}")
    run = await probe_harness({"type": "mysql", "dsn": dsn, "write_canary": True}).run()
    assert run.result.status is Status.HEALTHY, run.result

    def canary_rows() -> list[tuple[object, ...]]:
        with mysql_admin(dsn) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, checked_at > NOW(6) - INTERVAL 1 MINUTE FROM {CANARY_TABLE}")
            return list(cur.fetchall())

    assert await asyncio.to_thread(canary_rows) == [(1, 1)]

    # A user who may only read: the canary write fails, and says why.
    reader = mysql_user(PASSWORD, grant=f"SELECT ON {mysql_database}.*")
    read_only = with_netloc(dsn, user=reader, password=quote(PASSWORD, safe=""))
    assert (await probe_harness({"type": "mysql", "dsn": read_only}).run()).result.status is (
        Status.HEALTHY
    )
    run = await probe_harness({"type": "mysql", "dsn": read_only, "write_canary": True}).run()
    assert run.result.status is Status.UNHEALTHY
    assert re.search(r"(INSERT|CREATE) command denied", run.result.error or ""), run.result.error
    assert_no_secret(run.result.error, PASSWORD)


def test_mysql_dsn_must_be_a_mysql_url() -> None:
    from pydantic import ValidationError

    from exporter.probes.mysql import MysqlConfig

    with pytest.raises(ValidationError, match="mysql://"):
        MysqlConfig.model_validate({"type": "mysql", "dsn": "postgresql://x@h/db"})
