"""The store: history and coordination, shared by the monitors of a group.

One class over two backends (SQLite for a single node, PostgreSQL for a
group); what differs between them is a :class:`~recovery_webhook.store.worker.Dialect`
and how each opens. Its parts are repositories, one per concern:
``store.events``, ``store.alerts``, ``store.attempts``, ``store.leases``,
``store.monitors``, ``store.settings``.

When the store cannot be reached, reads and fenced writes fail at once with
StoreUnavailable, and plain writes (events, alerts, counts) are kept in a
bounded :class:`WriteBuffer` and written, in order, once it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from recovery_webhook.store.buffer import MAX_ROWS, WriteBuffer
from recovery_webhook.store.errors import StoreUnavailable
from recovery_webhook.store.worker import Db, Dialect, Job, StoreWorker

log = logging.getLogger(__name__)

#: A call that runs longer than this is broken off and the store counted down.
CALL_TIMEOUT = 5.0
#: How often an unreachable store is tried again.
RETRY_INTERVAL = 1.0
#: Rows of buffered writes sent back per round once the store is back.
_REPLAY_ROWS = 2_000


@dataclass(frozen=True)
class Availability:
    available: bool
    since: float
    error: str | None
    buffered_rows: int
    dropped_rows: int

    def as_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "since": self.since,
            "error": self.error,
            "buffered_rows": self.buffered_rows,
            "dropped_rows": self.dropped_rows,
        }


class Store:
    """Open it, use its repositories, close it. Subclasses pick the backend."""

    #: Where the store is, for messages (no secrets).
    where: str

    def __init__(self, dialect: Dialect, where: str, max_buffered_rows: int = MAX_ROWS) -> None:
        from recovery_webhook.store.alerts import AlertsRepo
        from recovery_webhook.store.attempts import AttemptsRepo
        from recovery_webhook.store.events import EventsRepo
        from recovery_webhook.store.leases import LeasesRepo
        from recovery_webhook.store.monitors import MonitorsRepo, SettingsRepo

        self.dialect = dialect
        self.where = where
        self._worker = StoreWorker(dialect, f"store-{dialect.name}")
        self._buffer = WriteBuffer(max_buffered_rows)
        self._available = False
        self._opened = False
        self._since = time.time()
        self._error: str | None = "not opened yet"
        self._keeper: asyncio.Task[None] | None = None
        self._replaying = False
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self.call_timeout = CALL_TIMEOUT
        self.retry_interval = RETRY_INTERVAL
        self.events = EventsRepo(self)
        self.alerts = AlertsRepo(self)
        self.attempts = AttemptsRepo(self)
        self.leases = LeasesRepo(self)
        self.monitors = MonitorsRepo(self)
        self.settings = SettingsRepo(self)

    # -- lifecycle ---------------------------------------------------------------------

    def prepare(self, db: Db) -> None:
        """On the store's thread, in a transaction: create or migrate the schema."""
        from recovery_webhook.store.schema import migrate

        migrate(db, self.where)

    async def open(self, wait: bool = True) -> None:
        """Connect and migrate. With ``wait=False`` an unreachable store is not an
        error: the store starts unavailable and keeps trying; other errors
        (a newer schema, a file that cannot be opened) always raise."""
        try:
            await self._worker.submit(self.prepare)
        except StoreUnavailable as exc:
            if wait:
                raise
            self._went_down(exc)
        else:
            self._opened = True
            self._set_available(None)
        self._keeper = asyncio.create_task(self._keep(), name="store-keeper")

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if self._available and len(self._buffer):
            await self._replay()
        if len(self._buffer):
            log.error(
                "history: %d rows could not be written before the monitor stopped",
                self._buffer.rows,
            )
        await self._worker.close()

    def when_available(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call ``listener`` each time the store becomes reachable again (and at
        the first open, if it was not reachable then)."""
        self._listeners.append(listener)

    # -- what the rest of the monitor asks ---------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    def availability(self) -> Availability:
        return Availability(
            self._available and not len(self._buffer),
            self._since,
            self._error,
            self._buffer.rows,
            self._buffer.dropped,
        )

    async def call(self, func: Callable[[Db], Any]) -> Any:
        """Run ``func`` in a transaction on the store's thread; its result.
        Raises StoreUnavailable at once while the store is down."""
        if not self._available:
            raise StoreUnavailable(self._error or "the store is unreachable")
        try:
            return await self._worker.submit(func)
        except StoreUnavailable as exc:
            self._went_down(exc)
            raise

    def write(self, job: Job) -> asyncio.Future[None]:
        """Queue a plain write; the future says when it is committed or, with the
        store down, kept for later. Fails only for errors of the write itself."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._available or len(self._buffer) or self._replaying:
            self._buffer.add(job)
            done.set_result(None)
            return done

        def finished(submitted: asyncio.Future[Any]) -> None:
            if done.done():
                return
            if submitted.cancelled():
                done.cancel()
                return
            exc = submitted.exception()
            if exc is None:
                done.set_result(None)
            elif isinstance(exc, StoreUnavailable):
                self._went_down(exc)
                self._buffer.add(job)
                done.set_result(None)
            else:
                done.set_exception(exc)

        self._worker.submit(job).add_done_callback(finished)
        return done

    async def prune(self, cutoff: float) -> int:
        """Remove history older than ``cutoff``; how many rows went."""
        removed: int = await self.call(lambda db: prune(db, cutoff))
        return removed

    # -- availability ------------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        error = str(exc) or type(exc).__name__
        if self._available:
            log.error("history: the store at %s is unreachable: %s", self.where, error)
            self._since = time.time()
        self._available = False
        self._error = error

    def _set_available(self, error: str | None) -> None:
        if not self._available:
            if self._opened and self._error != "not opened yet":
                log.warning("history: the store at %s answers again", self.where)
            self._since = time.time()
        self._available = True
        self._error = error

    async def _keep(self) -> None:
        """Break calls that hang; try an unreachable store again; write back."""
        tick = min(0.5, self.retry_interval)
        next_try = 0.0
        while True:
            await asyncio.sleep(tick)
            try:
                if self._worker.interrupt_if_busy_for(self.call_timeout):
                    self._went_down(StoreUnavailable(f"no answer within {self.call_timeout:g}s"))
                if self._available or time.monotonic() < next_try:
                    continue
                next_try = time.monotonic() + self.retry_interval
                await self._try_again()
            except asyncio.CancelledError:
                raise
            except Exception:  # the keeper must outlive one bad round
                log.exception("history: the store keeper failed")

    async def _try_again(self) -> None:
        try:
            await self._worker.submit(self.prepare if not self._opened else _ping)
        except StoreUnavailable as exc:
            self._error = str(exc) or type(exc).__name__
            return
        self._opened = True
        self._set_available(None)
        await self._replay()
        for listener in self._listeners:
            try:
                await listener()
            except Exception:  # one listener's failure must not cost the others
                log.exception("history: catching up after the store came back failed")

    async def _replay(self) -> None:
        """Write what was kept, oldest first, while the store answers."""
        if self._replaying:
            return
        self._replaying = True
        try:
            while len(self._buffer) and self._available:
                jobs = self._buffer.take(_REPLAY_ROWS)
                results = await asyncio.gather(
                    *(self._worker.submit(job) for job in jobs), return_exceptions=True
                )
                unwritten = [
                    job
                    for job, result in zip(jobs, results, strict=True)
                    if isinstance(result, StoreUnavailable)
                ]
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(
                        result, StoreUnavailable
                    ):
                        log.error("history: a kept write failed and is dropped: %s", result)
                if unwritten:
                    self._went_down(next(r for r in results if isinstance(r, StoreUnavailable)))
                    self._buffer.put_back(unwritten)
                    return
        finally:
            self._replaying = False


def _ping(db: Db) -> None:
    db.one("SELECT 1")


def prune(db: Db, cutoff: float) -> int:
    """Remove what is older than ``cutoff``; how many rows went."""
    removed = db.run("DELETE FROM events WHERE ts < ?", (cutoff,))
    removed += db.run("DELETE FROM alerts WHERE last_seen < ?", (cutoff,))
    removed += db.run(
        "DELETE FROM attempts WHERE started_at < ? AND status <> 'running'", (cutoff,)
    )
    removed += db.run("DELETE FROM monitors WHERE last_seen < ?", (cutoff,))
    return removed
