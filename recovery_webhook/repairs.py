"""One repair at a time per component, across the whole group.

The store holds what is owed (alerts whose repair is queued, due for a retry,
or left running by a monitor that is gone). A monitor repairs a component only
while it holds the component's lease: its worker takes the lease, ends what a
previous holder left running (interrupted), works through the component's
owed alerts, oldest first, and gives the lease up. Another monitor that heard of
the same alerts finds the lease held and leaves them to the holder; if the
holder dies, its lease expires and the next sweep of any monitor takes the
repairs over.

Intake before repair: a worker waits for a lull in notifications (REPAIR_LULL
with none coming and none waiting for its write), at most REPAIR_HOLD after it
was asked to run, so that an alert storm's answers come first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from recovery_webhook.leases import HeldLease, Leases
from recovery_webhook.ledger import AlertLedger
from recovery_webhook.states import RepairState, Trigger
from recovery_webhook.store import AlertRow, LeaseLost, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

REPAIR_LULL = 0.02
REPAIR_HOLD = 1.0

Repair = Callable[[AlertRow, HeldLease, Trigger], Coroutine[Any, Any, None]]


class RepairInProgress(Exception):
    """A repair of this component is running, here or on another monitor (HTTP 409)."""


def lease_name(component: str) -> str:
    return f"repair:{component}"


def trigger_of(row: AlertRow) -> Trigger:
    if row.repair == RepairState.RUNNING:
        return Trigger.RESUME  # its monitor stopped or died during the repair
    if row.repair == RepairState.RETRY_PENDING:
        return Trigger.RETRY
    return Trigger.ALERT


class RepairQueue:
    def __init__(
        self,
        store: Store,
        leases: Leases,
        ledger: AlertLedger,
        repair: Repair,
        left_running: Callable[[str, HeldLease], Awaitable[None]],
        store_down: Callable[[str, str | None], None],
    ) -> None:
        self.store = store
        self.leases = leases
        self.ledger = ledger
        self._repair = repair
        self._left_running = left_running
        self._store_down = store_down
        self.repair_hold = REPAIR_HOLD
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, HeldLease] = {}
        self._running: set[str] = set()
        # When a worker was asked to run (loop time), and by which alert.
        self._asked: dict[str, tuple[float, str | None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._stopping = False

    def holding(self, component: str) -> bool:
        """This monitor holds the component's lease (a repair runs or is due)."""
        return component in self._held

    def repairing(self, component: str) -> bool:
        """A repair of ``component`` runs on this monitor right now."""
        return component in self._running

    async def stop(self) -> None:
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    # -- asking for repairs ----------------------------------------------------------

    def kick(self, component: str, alertname: str | None = None) -> None:
        """Repairs of ``component`` may be owed: have a worker look."""
        if self._stopping:
            return  # still owed in the store: the next start (or another monitor) sees it
        loop = asyncio.get_running_loop()
        self._asked.setdefault(component, (loop.time(), alertname))
        if component not in self._workers:
            task = asyncio.create_task(self._work(component), name=f"repair-{component}")
            task.add_done_callback(_log_crash)
            self._workers[component] = task

    def kick_at(self, component: str, when: float) -> None:
        """Look again at ``when`` (wall clock): a retry falls due then."""
        previous = self._timers.pop(component, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time())
        self._timers[component] = loop.call_later(delay, self._due, component)

    def _due(self, component: str) -> None:
        self._timers.pop(component, None)
        self.kick(component)

    async def sweep(self, owed: dict[str, float | None], running: set[str], free: set[str]) -> None:
        """From the group's refresh: owed repairs (and attempts left running)
        whose component's lease is free (``free``) are taken up."""
        now = time.time()
        for component in set(owed) | running:
            if component not in free or component in self._held:
                continue
            due = owed.get(component)
            if due is None or due <= now:
                self.kick(component)
            elif component not in self._timers:
                self.kick_at(component, due)

    # -- the worker ----------------------------------------------------------------

    async def _work(self, component: str) -> None:
        try:
            while component in self._asked and not self._stopping:
                asked_at, alertname = self._asked[component]
                await self._intake_lull(asked_at)
                del self._asked[component]
                try:
                    held = await self.leases.hold(lease_name(component))
                except StoreError:
                    self._store_down(component, alertname)
                    return
                if held is None:
                    return  # another monitor holds it; a sweep brings it back if it goes
                self._held[component] = held
                try:
                    await self._work_through(component, held)
                finally:
                    del self._held[component]
                    await held.release()
        finally:
            if self._workers.get(component) is asyncio.current_task():
                del self._workers[component]

    async def _work_through(self, component: str, held: HeldLease) -> None:
        try:
            await self._left_running(component, held)
            while not self._stopping:
                row = await self.store.alerts.next_owed(component, time.time())
                if row is None:
                    return
                self._running.add(component)
                try:
                    await held.run(self._repair(row, held, trigger_of(row)))
                except (LeaseLost, StoreError):
                    raise
                except Exception:  # the queue goes on: one alert's fault stays its own
                    log.exception("the repair of alert %s failed unexpectedly", row.key)
                    await self.store.alerts.set_repair(
                        row.key,
                        RepairState.RETRY_PENDING,
                        held.lease,
                        retry_at=time.time() + 60,
                        note="the repair failed unexpectedly; see the monitor's log",
                    )
                finally:
                    self._running.discard(component)
        except LeaseLost as exc:
            log.error("the repair of %s stopped: %s", component, exc)
        except StoreError as exc:
            log.error("the repair of %s stopped, the store failed: %s", component, exc)

    async def run_now(self, component: str, work: Callable[[HeldLease], Awaitable[T]]) -> T:
        """Run ``work`` under the component's lease now (a repair a person asked
        for); RepairInProgress if a repair holds it already."""
        if component in self._held:
            raise RepairInProgress(component)
        held = await self.leases.hold(lease_name(component))
        if held is None:
            raise RepairInProgress(component)
        self._held[component] = held
        self._running.add(component)
        try:
            await self._left_running(component, held)
            return await held.run(_call(work, held))
        finally:
            self._running.discard(component)
            del self._held[component]
            await held.release()
            self.kick(component)  # what was owed meanwhile

    async def _intake_lull(self, asked_at: float) -> None:
        """Wait until no notification has come for REPAIR_LULL seconds and none
        waits for its alerts to be written, or until ``repair_hold`` seconds
        after ``asked_at`` (loop time)."""
        loop = asyncio.get_running_loop()
        deadline = asked_at + self.repair_hold
        ledger = self.ledger
        while True:
            now = loop.time()
            quiet = ledger.last_intake + REPAIR_LULL - now
            wait = max(quiet, REPAIR_LULL if ledger.recording else 0.0)
            if wait <= 0 or now >= deadline:
                return
            await asyncio.sleep(min(wait, deadline - now))


async def _call(work: Callable[[HeldLease], Awaitable[T]], held: HeldLease) -> T:
    return await work(held)


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a repair worker failed", exc_info=task.exception())
