"""``postgres_terminate``: end the sessions that hold the database hostage.

Sessions idle in a transaction for longer than ``older_than``, and sessions
whose transaction has blocked another for that long, are terminated with
``pg_terminate_backend``. Never the monitor's own sessions, never this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

import psycopg
from pydantic import Field, SecretStr, field_validator

from exporter.probes.base import describe_error, url_password
from exporter.probes.postgres import APPLICATION_NAME, PostgresConfig, check_dsn
from exporter.units import Seconds
from recovery_webhook.actions.base import ActionConfig, ActionContext, ActionError, BaseAction

# Candidates: idle in a transaction, or holding a lock someone waits for.
_CANDIDATES = """
WITH blockers AS (
    SELECT DISTINCT unnest(pg_blocking_pids(pid)) AS pid
    FROM pg_stat_activity
    WHERE cardinality(pg_blocking_pids(pid)) > 0
)
SELECT a.pid, a.usename, a.application_name, a.state,
       extract(epoch FROM now() - coalesce(a.state_change, a.xact_start))::float8 AS age,
       left(coalesce(a.query, ''), 120) AS query
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND coalesce(a.application_name, '') <> %(own)s
  AND a.datname = current_database()
  AND (
        (%(idle)s AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
             AND now() - a.state_change > make_interval(secs => %(age)s))
     OR (%(blocking)s AND a.pid IN (SELECT pid FROM blockers)
             AND now() - coalesce(a.xact_start, a.query_start) > make_interval(secs => %(age)s))
  )
ORDER BY a.pid
"""


class PostgresTerminateConfig(ActionConfig):
    type: Literal["postgres_terminate"]
    dsn: SecretStr | None = Field(
        default=None, description="default: the component's postgres probe's dsn"
    )
    older_than: Seconds = 60.0
    idle_in_transaction: bool = True
    blocking: bool = True

    @field_validator("dsn")
    @classmethod
    def _usable(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is not None:
            check_dsn(dsn.get_secret_value())
        return dsn


class Action(BaseAction):
    kind: ClassVar[str] = "postgres_terminate"
    Config: ClassVar[type[PostgresTerminateConfig]] = PostgresTerminateConfig
    config: PostgresTerminateConfig

    async def run(self, context: ActionContext) -> str:
        dsn = self._dsn(context)
        try:
            async with await psycopg.AsyncConnection.connect(
                dsn,
                autocommit=True,
                connect_timeout=max(int(context.timeout), 1),
                application_name=APPLICATION_NAME,
            ) as conn:
                rows = await (
                    await conn.execute(
                        _CANDIDATES,
                        {
                            "own": APPLICATION_NAME,
                            "idle": self.config.idle_in_transaction,
                            "blocking": self.config.blocking,
                            "age": self.config.older_than,
                        },
                    )
                ).fetchall()
                ended = []
                for pid, user, app, state, age, query in rows:
                    done = await (
                        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    ).fetchone()
                    if done and done[0]:
                        ended.append(
                            f"pid {pid} user={user} application={app or '-'} state={state}"
                            f" age={age:.0f}s query={query!r}"
                        )
        except psycopg.Error as exc:
            raise ActionError(f"cannot reach the database: {describe_error(exc)}") from None
        if not ended:
            return (
                f"no session idle in a transaction or blocking for over {self.config.older_than:g}s"
            )
        return f"terminated {len(ended)} session(s):\n" + "\n".join(ended)

    def _dsn(self, context: ActionContext) -> str:
        if self.config.dsn is not None:
            return self.config.dsn.get_secret_value()
        return context.probe_config(PostgresConfig, "dsn").dsn.get_secret_value()

    def secrets(self) -> Iterable[str]:
        if self.config.dsn is None:
            return ()
        dsn = self.config.dsn.get_secret_value()
        return [dsn, *url_password(dsn)]
