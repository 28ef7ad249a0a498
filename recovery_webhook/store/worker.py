"""The store's thread: every statement runs on one thread that owns the connection.

The event loop never waits on a disk or a socket, and writes never race. Calls
run one at a time in the order they were submitted. Group commit: the calls
that queued up while the thread was busy run together, in order, in one
transaction; if that fails for a reason other than a lost connection, each runs
again in its own, so that only a failing call fails. Calls of a
:class:`Batched` kind that queue up back to back are handed over together, so
that they can become multi-row statements.

Under an alert storm this turns fifty commits into two or three, and the
thread's hundreds of waits for the GIL (one per statement step), which the busy
event loop holds, into dozens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol, TypeVar

from recovery_webhook.store.errors import StoreUnavailable

T = TypeVar("T")

# Rows per multi-row statement: powers of two up to this (few distinct
# statements for the statement caches; 704 parameters at most, below old
# SQLite's 999). Larger chunks hold the GIL longer while binding.
CHUNK = 64


class Dialect(Protocol):
    """What differs between the backends; the SQL of the repositories is shared."""

    name: str
    now: str
    """SQL for the store's clock, in seconds since the epoch."""
    greatest: str
    """The name of the two-argument maximum function."""
    lock_row: str
    """Appended to a SELECT that must lock the row it reads until commit."""
    arrays: bool
    """Many rows are best written as one statement over arrays (else as
    multi-row statements)."""
    concurrent_writers: bool
    """Other processes (monitors) write at the same time."""

    def connect(self) -> Any: ...

    def translate(self, sql: str) -> str:
        """The statement in the driver's placeholder style (``?`` in the source)."""

    def transaction(self, raw: Any) -> AbstractContextManager[None]: ...

    def interrupt(self, raw: Any) -> None:
        """From another thread: make a call that hangs on ``raw`` fail now."""

    def is_disconnect(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is unusable (or was never made)."""

    def close(self, raw: Any) -> None: ...


class Db:
    """A connection as the repositories see it: SQL with ``?`` placeholders."""

    __slots__ = ("_dialect", "_raw", "_statements")

    def __init__(self, dialect: Dialect, raw: Any) -> None:
        self._dialect = dialect
        self._raw = raw
        self._statements: dict[str, str] = {}

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def _sql(self, sql: str) -> str:
        try:
            return self._statements[sql]
        except KeyError:
            translated = self._statements[sql] = self._dialect.translate(sql)
            return translated

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._raw.execute(self._sql(sql), params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = self.execute(sql, params)
        try:
            return list(cursor.fetchall())
        finally:
            # Closed here, on the store's thread: a sqlite3 cursor freed on the
            # event loop's thread resets its statement, which this thread may be
            # running again by then ("bad parameter or other API misuse").
            cursor.close()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0] if found else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; how many rows it changed."""
        cursor = self.execute(sql, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def insert_rows(
        self, sql: str, width: int, values: Sequence[Any], types: Sequence[str] = ()
    ) -> None:
        """Run ``sql`` over ``values``, a flat list of rows of ``width`` values.

        ``{}`` in ``sql`` stands for the rows: ``VALUES {}`` in an INSERT, or
        ``(VALUES {}) AS v`` (columns ``v.column1``...) in an UPDATE ... FROM. On
        SQLite the rows go in chunks of CHUNK, ... 4, 2, 1 rows; where the dialect
        takes arrays (``types``: each column's SQL type), in one statement."""
        if not values:
            return
        if self._dialect.arrays and types:
            self._insert_arrays(sql, width, values, types)
            return
        rows = len(values) // width
        start = 0
        size = CHUNK
        while rows:
            while size > rows:
                size //= 2
            end = start + size * width
            self.run(_statement(sql, width, size), values[start:end])
            start = end
            rows -= size

    def _insert_arrays(
        self, sql: str, width: int, values: Sequence[Any], types: Sequence[str]
    ) -> None:
        # One statement whatever the rows: a column an array, unnested by the
        # server. (psycopg re-parses a long statement's placeholders every time.)
        arrays = ", ".join(f"?::{kind}[]" for kind in types)
        names = ", ".join(f"column{n}" for n in range(1, width + 1))
        if "(VALUES {})" in sql:
            statement = sql.replace("(VALUES {})", f"unnest({arrays})").replace(
                "AS v", f"AS v({names})"
            )
        else:
            statement = sql.replace("VALUES {}", f"SELECT * FROM unnest({arrays})")
        self.run(statement, [list(values[i::width]) for i in range(width)])


_STATEMENTS: dict[tuple[str, int, int], str] = {}


def _statement(sql: str, width: int, rows: int) -> str:
    key = (sql, width, rows)
    found = _STATEMENTS.get(key)
    if found is None:
        group = "(" + ", ".join("?" * width) + ")"
        found = _STATEMENTS[key] = sql.format(", ".join([group] * rows))
    return found


class Batched(Protocol):
    """A write whose neighbours of the same kind run with it, as one."""

    batched: ClassVar[bool]

    @classmethod
    def run_together(cls, db: Db, jobs: Sequence[Any]) -> None: ...


Job = Callable[[Db], Any]
_Queued = tuple[Job, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _deliver(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: the outcomes of the thread's calls."""
    for future, ok, value in results:
        if future.done():  # cancelled by its caller
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class StoreWorker:
    def __init__(self, dialect: Dialect, name: str) -> None:
        self.dialect = dialect
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._raw: Any = None
        self._db: Db | None = None
        self._jobs: list[_Queued] = []
        self._jobs_lock = threading.Lock()
        self._drain_scheduled = False
        #: When the call now running started (monotonic), or None when idle.
        self.busy_since: float | None = None

    def submit(self, func: Job) -> asyncio.Future[Any]:
        """Queue ``func`` for the store's thread; the future says when it is done
        (committed, for a write)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._jobs_lock:
            self._jobs.append((func, future, loop))
            if self._drain_scheduled:
                return future
            self._drain_scheduled = True
        self._executor.submit(self._drain)
        return future

    def interrupt_if_busy_for(self, seconds: float) -> bool:
        """From the event loop: break a call that has run longer than ``seconds``
        (a hung server holds it forever otherwise); True if one was broken."""
        since = self.busy_since
        raw = self._raw
        if since is None or raw is None or time.monotonic() - since < seconds:
            return False
        self.dialect.interrupt(raw)
        return True

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    # -- on the store's thread -------------------------------------------------------

    def _drain(self) -> None:
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
            self._drain_scheduled = False
        self.busy_since = time.monotonic()
        try:
            outcomes = self._outcomes([func for func, _, _ in jobs])
        except BaseException as exc:  # nobody may be left waiting forever
            outcomes = [(False, exc)] * len(jobs)
        finally:
            self.busy_since = None
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(jobs, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, results)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def _connection(self) -> Db:
        if self._db is None:
            try:
                self._raw = self.dialect.connect()
            except Exception as exc:
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
            self._db = Db(self.dialect, self._raw)
        return self._db

    def _disconnect(self) -> None:
        raw, self._raw, self._db = self._raw, None, None
        if raw is not None:
            try:
                self.dialect.close(raw)
            except Exception:  # already broken: nothing more to release
                pass

    def _lost(self, exc: BaseException) -> StoreUnavailable:
        self._disconnect()
        if isinstance(exc, StoreUnavailable):
            return exc
        unavailable = StoreUnavailable(str(exc).strip() or type(exc).__name__)
        unavailable.__cause__ = exc
        return unavailable

    def _outcomes(self, funcs: list[Job]) -> list[tuple[bool, Any]]:
        try:
            db = self._connection()
        except StoreUnavailable as exc:
            return [(False, exc)] * len(funcs)
        if not self.dialect.concurrent_writers:
            return self._commit(db, funcs)
        # Other monitors write the same rows at once: a transaction of one kind of
        # write at a time, its rows in key order, so that no two can deadlock.
        outcomes: list[tuple[bool, Any]] = []
        for _, group in _runs(funcs):
            done = self._commit(db, group)
            outcomes += done
            if done and isinstance(done[-1][1], StoreUnavailable):
                lost = done[-1][1]
                return [*outcomes, *[(False, lost)] * (len(funcs) - len(outcomes))]
        return outcomes

    def _commit(self, db: Db, funcs: list[Job]) -> list[tuple[bool, Any]]:
        """``funcs`` in one transaction; if that fails (not for a lost
        connection), each again in its own, so that only a failing call fails."""
        if len(funcs) > 1:
            try:
                return self._together(db, funcs)
            except Exception as exc:
                if isinstance(exc, StoreUnavailable) or self.dialect.is_disconnect(exc):
                    return [(False, self._lost(exc))] * len(funcs)
                # Rolled back: each call alone, in its own transaction, as before.
        outcomes: list[tuple[bool, Any]] = []
        for index, func in enumerate(funcs):
            try:
                with self.dialect.transaction(self._raw):
                    outcomes.append((True, func(db)))
            except Exception as exc:
                if isinstance(exc, StoreUnavailable) or self.dialect.is_disconnect(exc):
                    lost = self._lost(exc)
                    return [*outcomes, *[(False, lost)] * (len(funcs) - index)]
                outcomes.append((False, exc))
        return outcomes

    def _together(self, db: Db, funcs: list[Job]) -> list[tuple[bool, Any]]:
        """Run ``funcs`` in order in one transaction; raises if any of them does."""
        outcomes: list[tuple[bool, Any]] = []
        with self.dialect.transaction(self._raw):
            for kind, group in _runs(funcs):
                if kind is None:
                    outcomes.append((True, group[0](db)))
                else:
                    kind.run_together(db, group)
                    outcomes.extend([(True, None)] * len(group))
        return outcomes


def _runs(funcs: list[Job]) -> Iterator[tuple[Any, list[Job]]]:
    """Consecutive calls of one Batched kind together; any other call alone."""
    kind: Any = None
    group: list[Job] = []
    for func in funcs:
        batched = type(func) if getattr(type(func), "batched", False) else None
        if batched is not None and batched is kind:
            group.append(func)
            continue
        if group:
            yield kind, group
        kind, group = batched, [func]
    if group:
        yield kind, group
