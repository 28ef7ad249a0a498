"""``mysql``: connect, ``SELECT 1``, optionally write a canary row, and read
connection use and the read-only flag (MySQL or MariaDB, through PyMySQL)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal
from urllib.parse import unquote

import pymysql
from pydantic import Field, SecretStr, field_validator

from exporter.model import Measurement, Status
from exporter.probes.base import (
    BaseProbe,
    ProbeConfig,
    ProbeFailure,
    checked_url,
    describe_error,
    url_password,
)
from exporter.probes.postgres import APPLICATION_NAME, CANARY_TABLE, judge_connections


class MysqlConfig(ProbeConfig):
    type: Literal["mysql"]
    dsn: SecretStr = Field(description="mysql://user:password@host:port/database")
    write_canary: bool = False
    connections_degraded: float = Field(default=0.8, gt=0, le=1)
    connections_unhealthy: float = Field(default=0.95, gt=0, le=1)
    expect_primary: bool = Field(default=True, description="a read-only server is degraded")

    @field_validator("dsn")
    @classmethod
    def _parsable(cls, dsn: SecretStr) -> SecretStr:
        connect_args(dsn.get_secret_value(), 1.0)
        return dsn


def connect_args(dsn: str, timeout: float) -> dict[str, Any]:
    example = "a mysql://user:password@host:port/database URL"
    scheme = dsn.partition(":")[0].lower()
    if scheme.split("+")[0] not in ("mysql", "mariadb"):
        raise ValueError(f"expected {example}")
    parts = checked_url(dsn, (scheme,), example)
    port = parts.port or 3306
    seconds = max(int(timeout), 1)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
        "connect_timeout": seconds,
        "read_timeout": seconds,
        "write_timeout": seconds,
        "autocommit": True,
        "program_name": APPLICATION_NAME,
    }


def mysql_error(exc: BaseException, timeout: float) -> str:
    """PyMySQL's ``(2003, "Can't connect...")`` as words, a timeout said as one."""
    if isinstance(exc, pymysql.MySQLError) and len(exc.args) == 2:
        code, message = exc.args
        text = f"{message} (MySQL error {code})"
        return f"no answer within {timeout:g}s: {text}" if "timed out" in str(message) else text
    return describe_error(exc)


class Probe(BaseProbe):
    kind: ClassVar[str] = "mysql"
    Config: ClassVar[type[MysqlConfig]] = MysqlConfig
    config: MysqlConfig

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        try:
            used, limit, read_only = await self.context.in_thread(self._blocking_check)
        except (pymysql.MySQLError, OSError) as exc:
            raise ProbeFailure(mysql_error(exc, self.timeout)) from None
        return judge_connections(
            self.config.connections_degraded,
            self.config.connections_unhealthy,
            used,
            limit,
            read_only,
            self.config.expect_primary,
        )

    def _blocking_check(self) -> tuple[int, int, bool]:
        # A fresh connection per run: PyMySQL connections are not thread-safe and
        # a probe run may be abandoned mid-way by its timeout.
        args = connect_args(self.config.dsn.get_secret_value(), self.timeout)
        conn = pymysql.connect(**args)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1, @@global.read_only, @@global.max_connections")
                _, read_only, limit = cur.fetchone()
                cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
                row = cur.fetchone()
                used = int(row[1]) if row else 0
                if self.config.write_canary and not read_only:
                    timeout = max(int(self.timeout * 0.8), 1)
                    cur.execute(f"SET SESSION innodb_lock_wait_timeout = {timeout}")
                    cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {CANARY_TABLE}"
                        " (id INT PRIMARY KEY, checked_at DATETIME(6) NOT NULL)"
                    )
                    cur.execute(
                        f"INSERT INTO {CANARY_TABLE} VALUES (1, NOW(6))"
                        " ON DUPLICATE KEY UPDATE checked_at = VALUES(checked_at)"
                    )
            return used, int(limit), bool(read_only)
        finally:
            conn.close()

    def secrets(self) -> Iterable[str]:
        dsn = self.config.dsn.get_secret_value()
        return [dsn, *url_password(dsn)]
