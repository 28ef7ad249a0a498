"""Alert intake: each alert instance (fingerprint + startsAt) recorded once.

The webhook's hot path. What must survive a crash is written before a
notification is answered: a new alert (a restart can neither lose it nor repair
it twice), a change of state (a resolved alert: no restart may resume its
repair), and any alert of this notification whose first write, by another
notification still in flight, has not committed yet. A pure repeat of a known
alert in the state it is already in (most of an alert storm) only counts, in
memory; the flusher adds those counts within ``repeat_flush_interval`` seconds,
and at stop. A crash can lose only that: the delivery counts of the last
interval, never an alert or a state.

The store is the arbiter between monitors: an alert another monitor recorded
first is one row with both deliveries counted, and one ``alert`` event (its key
makes it one). What this monitor holds in memory is what it heard.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.audit import AuditLog
from recovery_webhook.alerts import Alert, alert_key, severity
from recovery_webhook.metrics import RecoveryMetrics
from recovery_webhook.states import RepairState
from recovery_webhook.store import AlertRow, Store
from recovery_webhook.store.events import event_values

log = logging.getLogger(__name__)

# Repeats are counted in memory and written this often (and at stop).
REPEAT_FLUSH_INTERVAL = 0.5
# A resolution cancels a repair due later (the store ends it; the event says so).
_RETRIES = (RepairState.RETRY_PENDING, RepairState.WAITING)
# Resolved alerts are forgotten in memory after this long (the store keeps them).
_FORGET_RESOLVED = 86400.0
_FORGET_EVERY = 60.0


@dataclass(frozen=True)
class ReceiveResult:
    received: int
    new: int
    duplicates: int
    resolved: int
    repairs_queued: int


class AlertLedger:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        metrics: RecoveryMetrics,
        monitor: str,
        triage: Callable[[Alert], RepairState],
        queued: Callable[[list[AlertRow]], None],
    ) -> None:
        self.store = store
        self.audit = audit
        self.monitor = monitor
        self._triage = triage
        self._queued = queued
        self.alerts: dict[str, AlertRow] = {}
        # Repeats counted in memory, not written yet: deliveries to add, by key.
        self._unflushed: dict[str, int] = {}
        # The write that records an alert, while it has not committed.
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._next_forget = 0.0
        self.repeat_flush_interval = REPEAT_FLUSH_INTERVAL
        self._received_firing = metrics.alerts_received.labels("firing")
        self._received_resolved = metrics.alerts_received.labels("resolved")
        #: When the last notification came (loop time), and how many notifications
        #: wait for their alerts to be written: repairs wait for intake to pause.
        self.last_intake = 0.0
        self.recording = 0

    async def load(self, since: float) -> None:
        """Know the alerts the store has heard of since ``since``."""
        for row in await self.store.alerts.since(since):
            self.alerts.setdefault(row.key, row)

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="repeat-counts")

    async def stop(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush_repeats()

    def note_repair(self, key: str, repair: RepairState) -> None:
        """The repair of ``key`` moved on (this monitor ran it)."""
        row = self.alerts.get(key)
        if row is not None:
            row.repair = repair

    def first_since(self, component: str, since: float) -> float | None:
        """When the first alert about ``component`` arrived after ``since``."""
        times = [
            row.first_seen
            for row in self.alerts.values()
            if row.component == component and row.first_seen >= since
        ]
        return min(times, default=None)

    async def receive(self, alerts: Sequence[Alert]) -> ReceiveResult:
        """Record the alerts and queue their repairs; return once they are recorded."""
        now = time.time()
        known = self.alerts
        unflushed = self._unflushed
        in_flight = self._in_flight
        writes: dict[str, AlertRow] = {}
        events: list[tuple[float, str, str | None, dict[str, Any]]] = []
        keys: list[str | None] = []
        waits: list[asyncio.Future[None]] = []
        start: list[str] = []
        new = duplicates = resolved = firing = 0
        # No await until every alert is in self.alerts: a concurrent delivery of
        # the same alert (a second Alertmanager) then sees it as a repeat.
        for alert in alerts:
            key = alert_key(alert)
            row = known.get(key)
            status = alert["status"]
            if status == "firing":
                firing += 1
            if row is not None and (status == "firing" or row.status == "resolved"):
                # A repeat, in the state it is in (a firing delivery of a resolved
                # alert does not revive it): count it, in memory.
                duplicates += 1
                row.notifications += 1
                row.last_seen = now
                unflushed[key] = unflushed.get(key, 0) + 1
                pending = in_flight.get(key)
                if pending is not None:
                    if not pending.done():
                        waits.append(pending)  # its first write has not committed yet
                    elif pending.cancelled() or pending.exception() is not None:
                        # That write failed (its notification got a 5xx): this one
                        # writes the alert; a repair it queued never started.
                        if key not in writes:
                            writes[key] = row
                            if row.status == "firing" and row.repair == RepairState.QUEUED:
                                start.append(key)
                    else:
                        del in_flight[key]
                continue
            labels = alert["labels"]
            component = labels.get("component")
            if row is None and status == "firing":
                new += 1
                repair = self._triage(alert)
                row = _new_row(key, alert, "firing", repair, now)
                if repair == RepairState.QUEUED:
                    start.append(key)
                sev = severity(alert)
                events.append(
                    (
                        now,
                        "alert",
                        component,
                        {
                            "alertname": row.alertname,
                            "status": "firing",
                            "severity": sev,
                            "fingerprint": row.fingerprint,
                            "starts_at": row.starts_at,
                            "repair": repair,
                            "summary": alert.get("annotations", {}).get("summary"),
                        },
                    )
                )
                keys.append(f"alert:firing:{key}")
                self.audit.alert_triggered(
                    component or "-", sev, alertname=row.alertname, fingerprint=row.fingerprint
                )
            else:
                # Resolved: news for a firing alert, or for one never heard of.
                resolved += 1
                if row is None:
                    row = _new_row(key, alert, "resolved", RepairState.NONE, now)
                    retry_cancelled = False
                else:
                    retry_cancelled = row.repair in _RETRIES
                    row.status = "resolved"
                    row.last_seen = now
                    row.notifications += 1
                events.append(
                    (
                        now,
                        "alert",
                        component,
                        {
                            "alertname": row.alertname,
                            "status": "resolved",
                            "fingerprint": row.fingerprint,
                            "starts_at": row.starts_at,
                            "retry_cancelled": retry_cancelled,
                        },
                    )
                )
                keys.append(f"alert:resolved:{key}")
                self.audit.alert_resolved(
                    component or "-", alertname=row.alertname, fingerprint=row.fingerprint
                )
            known[key] = row
            writes[key] = row
        if firing:
            self._received_firing.inc(firing)
        if firing < len(alerts):
            self._received_resolved.inc(len(alerts) - firing)
        if writes:
            waits.append(self._record(writes, events, keys))
        if self._flusher is None and self._unflushed:
            # Not started, or stopped: no flusher will come, write the counts now.
            waits.append(self._submit_repeats())
        self.last_intake = asyncio.get_running_loop().time()
        self.recording += 1
        try:
            for waiting in waits:
                # Shielded: a cancelled request must not cancel a write that other
                # notifications wait for too.
                await asyncio.shield(waiting)
        finally:
            self.recording -= 1
        if start:
            # Right after this answer is on its way, not before.
            asyncio.get_running_loop().call_soon(self._queued, [known[k] for k in start])
        self._forget_old(now)
        return ReceiveResult(len(alerts), new, duplicates, resolved, len(start))

    def _record(
        self,
        writes: dict[str, AlertRow],
        events: list[tuple[float, str, str | None, dict[str, Any]]],
        keys: list[str | None],
    ) -> asyncio.Future[None]:
        rows = list(writes.values())
        try:
            written = self.store.alerts.record(
                rows, [1] * len(rows), event_values(events, self.monitor, keys)
            )
        except Exception as exc:  # not even queued: as a write that failed
            written = asyncio.get_running_loop().create_future()
            written.set_exception(exc)
        in_flight = self._in_flight
        for key in writes:
            in_flight[key] = written
        written.add_done_callback(functools.partial(self._written, list(writes)))
        return written

    def _written(self, keys: list[str], written: asyncio.Future[None]) -> None:
        """A write of alerts ended: once committed, they are no longer in flight."""
        if written.cancelled() or written.exception() is not None:
            return  # left in _in_flight: the next delivery of each writes it again
        in_flight = self._in_flight
        for key in keys:
            if in_flight.get(key) is written:
                del in_flight[key]

    # -- repeats -----------------------------------------------------------------------

    def _submit_repeats(self) -> asyncio.Future[None]:
        """Queue adding the deliveries of repeats not written yet."""
        counts, self._unflushed = self._unflushed, {}
        alerts = self.alerts
        rows = [(count, alerts[key].last_seen, key) for key, count in counts.items()]
        written = self.store.alerts.add_deliveries(rows)

        def failed(done: asyncio.Future[None]) -> None:
            if done.cancelled() or done.exception() is not None:
                for key, count in counts.items():  # written next time
                    self._unflushed[key] = self._unflushed.get(key, 0) + count

        written.add_done_callback(failed)
        return written

    async def flush_repeats(self) -> None:
        """Write the delivery counts of repeats that are only counted in memory."""
        if self._unflushed:
            await asyncio.shield(self._submit_repeats())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.repeat_flush_interval)
            try:
                await self.flush_repeats()
            except asyncio.CancelledError:
                raise
            except Exception:  # kept in memory; tried again next time
                log.exception("history: cannot write the counts of repeated alerts")

    def _forget_old(self, now: float) -> None:
        # A scan of every alert in memory: not on every notification (with 10,000
        # alerts known, that would be most of a notification's cost), once a minute.
        if len(self.alerts) < 10_000 or now < self._next_forget:
            return
        self._next_forget = now + _FORGET_EVERY
        for key, row in list(self.alerts.items()):
            if row.status == "resolved" and now - row.last_seen > _FORGET_RESOLVED:
                del self.alerts[key]
                self._unflushed.pop(key, None)


def _new_row(key: str, alert: Alert, status: str, repair: RepairState, now: float) -> AlertRow:
    labels = alert["labels"]
    return AlertRow(
        key,
        alert["fingerprint"],
        alert["startsAt"],
        labels["alertname"],
        labels.get("component"),
        labels,
        status,
        repair,
        now,
        now,
        1,
    )
