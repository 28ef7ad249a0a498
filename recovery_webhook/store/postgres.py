"""The shared store of a group of monitors: a PostgreSQL database.

Every call has a bound: connecting waits ``connect_timeout``, and a call that a
hung server (or network) never answers is broken off by the store's keeper,
which shuts the connection's socket down under it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from exporter.probes.base import redact_url
from recovery_webhook.store.base import Store
from recovery_webhook.store.buffer import MAX_ROWS
from recovery_webhook.store.worker import Db

CONNECT_TIMEOUT = 3
# Any number, the same in every monitor: who migrates the schema, one at a time.
_MIGRATION_LOCK = 7_3270_0001


class PostgresDialect:
    name = "postgresql"
    now = "extract(epoch from clock_timestamp())::float8"
    greatest = "greatest"
    lock_row = " FOR UPDATE"
    arrays = True
    concurrent_writers = True

    def __init__(self, url: str, application_name: str) -> None:
        self.url = url
        self.application_name = application_name

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=self.application_name[:63],
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )

    def translate(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    @contextmanager
    def transaction(self, raw: Any) -> Iterator[None]:
        with raw.transaction():
            yield

    def interrupt(self, raw: Any) -> None:
        # Shutting the socket down wakes the thread that waits on it; libpq then
        # reports the connection lost, and the next call connects afresh.
        try:
            fd = raw.fileno()
        except psycopg.Error:
            return
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def is_disconnect(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)

    def close(self, raw: Any) -> None:
        raw.close()


class PostgresStore(Store):
    def __init__(
        self, url: str, monitor: str = "pipeline-monitor", max_buffered_rows: int = MAX_ROWS
    ) -> None:
        self.url = url
        super().__init__(
            PostgresDialect(url, f"pipeline-monitor {monitor}"), redact_url(url), max_buffered_rows
        )

    def prepare(self, db: Db) -> None:
        # Two monitors starting on a new store at once: one creates, the other waits.
        db.one("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        super().prepare(db)
