"""``postgres``: connect, ``SELECT 1``, optionally write a canary row, and read
connection use and the standby flag."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import ClassVar, Literal

import psycopg
from pydantic import Field, SecretStr, field_validator

from exporter.model import Measurement, Status
from exporter.probes.base import (
    BaseProbe,
    ProbeConfig,
    ProbeContext,
    ProbeFailure,
    describe_error,
    url_password,
)

APPLICATION_NAME = "pipeline-monitor"
CANARY_TABLE = "pipeline_monitor_canary"


class PostgresConfig(ProbeConfig):
    type: Literal["postgres"]
    dsn: SecretStr

    @field_validator("dsn")
    @classmethod
    def _usable(cls, dsn: SecretStr) -> SecretStr:
        check_dsn(dsn.get_secret_value())
        return dsn

    write_canary: bool = Field(
        default=False,
        description=f"upsert a row in {CANARY_TABLE} (created if missing) to prove writes work",
    )
    connections_degraded: float = Field(default=0.8, gt=0, le=1)
    connections_unhealthy: float = Field(default=0.95, gt=0, le=1)
    expect_primary: bool = Field(
        default=True, description="a server in recovery (a standby) is degraded"
    )


_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


def check_dsn(dsn: str) -> None:
    """Refuse at start-up what libpq would refuse when connecting: a DSN it cannot
    parse, a port that is not a number from 1 to 65535, an unknown sslmode. The
    message never quotes the DSN (libpq's does)."""
    example = "postgresql://user:password@host:5432/db or host=... port=... key=value pairs"
    try:
        options = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError(f"not a PostgreSQL DSN (expected {example})") from None
    for port in str(options.get("port") or "5432").split(","):
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("the port is not a number from 1 to 65535")
    sslmode = options.get("sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(sorted(_SSLMODES))}")


class Probe(BaseProbe):
    kind: ClassVar[str] = "postgres"
    Config: ClassVar[type[PostgresConfig]] = PostgresConfig
    config: PostgresConfig

    def __init__(self, config: PostgresConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            # The whole probe is bounded by the scheduler; these keep the server
            # from holding a statement (or a lock wait) longer than the probe lives.
            budget_ms = max(int(self.timeout * 800), 100)
            self._conn = await psycopg.AsyncConnection.connect(
                self.config.dsn.get_secret_value(),
                autocommit=True,
                connect_timeout=max(int(self.timeout), 1),
                application_name=APPLICATION_NAME,
                options=f"-c statement_timeout={budget_ms} -c lock_timeout={budget_ms}",
            )
        return self._conn

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        try:
            return await self._check()
        except (psycopg.Error, OSError) as exc:
            await self.reset()
            raise ProbeFailure(describe_error(exc)) from None
        except asyncio.CancelledError:
            # Timed out mid-query: the connection's state is unknown, start afresh.
            await self.reset()
            raise

    async def _check(self) -> tuple[Status, list[Measurement], str | None]:
        conn = await self._connection()
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT 1, pg_is_in_recovery(),"
                " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
                " current_setting('max_connections')::int"
            )
            row = await cur.fetchone()
            assert row is not None
            _, in_recovery, used, limit = row
            if self.config.write_canary and not in_recovery:
                await cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {CANARY_TABLE}"
                    " (id int PRIMARY KEY, checked_at timestamptz NOT NULL)"
                )
                await cur.execute(
                    f"INSERT INTO {CANARY_TABLE} VALUES (1, now())"
                    " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at"
                )
        return judge_connections(
            self.config.connections_degraded,
            self.config.connections_unhealthy,
            int(str(used)),
            int(str(limit)),
            bool(in_recovery),
            self.config.expect_primary,
        )

    async def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await asyncio.wait_for(conn.close(), 1.0)
            except (asyncio.TimeoutError, psycopg.Error, OSError):
                pass

    def secrets(self) -> Iterable[str]:
        dsn = self.config.dsn.get_secret_value()
        return [dsn, *url_password(dsn), *_keyword_password(dsn)]


def _keyword_password(dsn: str) -> list[str]:
    """The password of a ``key=value`` DSN (``host=... password=...``)."""
    try:
        return [
            v
            for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items()
            if k == "password" and isinstance(v, str)
        ]
    except psycopg.ProgrammingError:
        return []


def judge_connections(
    degraded_ratio: float,
    unhealthy_ratio: float,
    used: int,
    limit: int,
    read_only: bool,
    expect_primary: bool,
) -> tuple[Status, list[Measurement], str | None]:
    measurements = [
        Measurement("database_connections", used),
        Measurement("database_max_connections", limit),
        Measurement("database_in_recovery", 1.0 if read_only else 0.0),
    ]
    ratio = used / limit if limit else 0.0
    summary = f"{used} of {limit} connections in use"
    if ratio >= unhealthy_ratio:
        raise ProbeFailure(f"{summary} ({ratio:.0%}), near the limit", measurements=measurements)
    if ratio >= degraded_ratio:
        raise ProbeFailure(f"{summary} ({ratio:.0%})", Status.DEGRADED, measurements)
    if read_only and expect_primary:
        raise ProbeFailure(
            "server is read-only (a standby or in recovery)", Status.DEGRADED, measurements
        )
    return Status.HEALTHY, measurements, summary
