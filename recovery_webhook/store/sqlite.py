"""The embedded store of a single node: one SQLite file in WAL mode."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exporter.private_files import make_private, open_private
from recovery_webhook.store.base import Store
from recovery_webhook.store.buffer import MAX_ROWS
from recovery_webhook.store.errors import StoreError


class SqliteDialect:
    name = "sqlite"
    # julianday() has millisecond precision and is in every SQLite release.
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    greatest = "max"
    lock_row = ""  # one writer at a time: a transaction is already exclusive
    # Rows in multi-row statements: one sqlite3 step per chunk instead of one per
    # row (each step releases and takes back the GIL, which the event loop holds
    # most of an alert storm).
    arrays = False
    concurrent_writers = False

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600 whatever the umask: it holds what repair commands printed.
            # SQLite gives the WAL and SHM files the database file's mode when it
            # creates them; existing ones are tightened.
            os.close(open_private(self.path, os.O_RDWR))
            for suffix in ("-wal", "-shm"):
                make_private(Path(f"{self.path}{suffix}"))
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the history file {self.path}: {exc}") from None
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def translate(self, sql: str) -> str:
        return sql

    @contextmanager
    def transaction(self, raw: Any) -> Iterator[None]:
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")

    def interrupt(self, raw: Any) -> None:
        raw.interrupt()

    def is_disconnect(self, exc: BaseException) -> bool:
        # A local file has no connection to lose; an interrupted call (a disk
        # that hangs) is what the watchdog turns into "unavailable".
        return isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc)

    def close(self, raw: Any) -> None:
        raw.close()


class SqliteStore(Store):
    def __init__(self, path: Path, max_buffered_rows: int = MAX_ROWS) -> None:
        self.path = path
        super().__init__(SqliteDialect(path), str(path), max_buffered_rows)
