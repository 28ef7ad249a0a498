"""The recovery engine: alert -> rule -> actions -> verification -> escalation.

* An alert instance (fingerprint + startsAt) runs at most one repair, however
  often Alertmanager repeats it and however many Alertmanagers send it.
* One repair at a time per component, in the order the alerts came (a queue
  and one worker task per component); each action under a timeout, then the
  component is re-probed until healthy or a deadline. A failed action hands
  over to the next one.
* Intake before repair: a queued repair waits for a lull in notifications
  (REPAIR_LULL), at most REPAIR_HOLD after it was queued, so that a storm's
  answers come first.
* A failed repair of a still-firing alert is retried after ``retry_delay``; a
  resolved alert cancels that. After ``max_attempts`` failed repairs within
  ``window`` the component is handed to people (manual intervention).
* Every attempt is written to history before it starts, with its alert marked
  running in the same transaction (so a crash leaves it marked interrupted at
  the next start), and again when it ends, with its feed event.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from exporter.audit import AuditLog
from exporter.model import Status
from exporter.monitor import Monitor
from exporter.probes.base import describe_error, scrub
from exporter.state import Transition
from recovery_webhook.actions import ActionContext, ActionError, build_action
from recovery_webhook.actions.base import Action
from recovery_webhook.alerts import Alert, alert_key, severity
from recovery_webhook.config import AppConfig, RecoveryRule
from recovery_webhook.history import AlertRow, AttemptRow, History
from recovery_webhook.metrics import RecoveryMetrics

log = logging.getLogger(__name__)

MANUAL_ALERTNAME = "ManualRecovery"
_MANUAL = "manual:"
_TARGET = "target:"
_INTERRUPTED = "the monitor stopped during this repair"
# Beyond an action's own timeout, before the engine cancels it (see _run_action).
_ACTION_GRACE = 5.0
# Resolved alerts are forgotten in memory after this long (history keeps them).
_FORGET_RESOLVED = 86400.0
_FORGET_EVERY = 60.0
# Repeats of a known alert are counted in memory and written this often (and at
# stop): a crash loses at most these last seconds of delivery counts.
REPEAT_FLUSH_INTERVAL = 0.5
# Intake before repair: a repair starts once no notification has come for
# REPAIR_LULL seconds and none waits for its alerts to be written, or at the
# latest REPAIR_HOLD seconds after it was queued (RecoveryEngine._intake_lull).
REPAIR_LULL = 0.02
REPAIR_HOLD = 1.0


class RepairInProgress(Exception):
    """A repair of this component is running (HTTP 409)."""


class UnknownComponent(KeyError):
    """Not a configured component (HTTP 404)."""


@dataclass(frozen=True)
class ReceiveResult:
    received: int
    new: int
    duplicates: int
    resolved: int
    repairs_queued: int


class RecoveryEngine:
    def __init__(
        self, config: AppConfig, monitor: Monitor, history: History, audit: AuditLog
    ) -> None:
        self.config = config
        self.settings = config.recovery
        self.monitor = monitor
        self.history = history
        self.audit = audit
        self.metrics = RecoveryMetrics(monitor.registry, config.components)
        if self.settings.enabled:
            self.metrics.declare_actions(
                {
                    (component, action.action_name)
                    for rule in self.settings.rules
                    for component in ([rule.component] if rule.component else config.components)
                    for action in rule.actions
                },
                ["dry_run"] if self.settings.dry_run else ["success", "failure"],
            )
        self._alerts: dict[str, AlertRow] = {}
        self._matcher_labels = sorted({k for rule in self.settings.rules for k in rule.matchers})
        self._rules_by_key: dict[tuple[str | None, ...], RecoveryRule | None] = {}
        # Repeats counted in memory, not written yet (see receive()).
        self._unflushed: dict[str, AlertRow] = {}
        # The write that records an alert, while it has not committed.
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._next_forget = 0.0
        self.repeat_flush_interval = REPEAT_FLUSH_INTERVAL
        self._received_firing = self.metrics.alerts_received.labels("firing")
        self._received_resolved = self.metrics.alerts_received.labels("resolved")
        self._locks = {name: asyncio.Lock() for name in config.components}
        # Repairs waiting for their turn, per component, and the one task that
        # works through each queue (one repair at a time per component): a storm's
        # thousand new alerts cost a thousand appends, not a thousand tasks.
        # (alert key, trigger, loop time it was queued)
        self._queues: dict[str, deque[tuple[str, str, float]]] = {
            name: deque() for name in config.components
        }
        self._workers: dict[str, asyncio.Task[None]] = {}
        # Intake, as repairs see it: when the last notification came (loop time),
        # and how many wait for their alerts to be written.
        self._last_intake = 0.0
        self._recording = 0
        self.repair_hold = REPAIR_HOLD
        self._manual: dict[str, dict[str, Any]] = {}
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_attempt: dict[str, AttemptRow] = {}
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        now = time.time()
        for attempt in await self.history.mark_interrupted(now):
            log.warning(
                "repair %s of %s was cut off by a restart", attempt.attempt_id, attempt.component
            )
            # Its _finish() never ran: without this, the history feed (the API,
            # the status page) would never show the attempt at all.
            ended = replace(attempt, ended_at=now, status="interrupted", error=_INTERRUPTED)
            await self.history.add_event(
                "recovery_attempt", attempt.component, ended.as_json(), ts=now
            )
            for action in attempt.actions or [{"action": "unknown"}]:
                self.metrics.attempts.labels(
                    attempt.component, action.get("action", "unknown"), "interrupted"
                ).inc()
            self.audit.recovery_attempt(
                {
                    "attempt_id": attempt.attempt_id,
                    "component": attempt.component,
                    "success": False,
                    "status": "interrupted",
                    "error_message": _INTERRUPTED,
                }
            )
        for target_key, target in (await self.history.settings(_TARGET)).items():
            if target_key in self.config.components:
                try:
                    self.monitor.scheduler.switch_target(target_key, target)
                except ValueError as exc:
                    log.warning("cannot restore the storage target of %s: %s", target_key, exc)
        for component, info in (await self.history.settings(_MANUAL)).items():
            if component in self.config.components and info:
                self._manual[component] = info
                self.metrics.manual_intervention.labels(component).set(1)
        recent = now - max(self.settings.window, _FORGET_RESOLVED)
        for row in await self.history.load_alerts(recent):
            self._alerts[row.key] = row
        for attempt in await self.history.attempts(len(self.config.components) * 5):
            self._last_attempt.setdefault(attempt.component, attempt)
        self.monitor.state.add_listener(self._on_transition)
        for row in list(self._alerts.values()):
            if row.status == "firing" and row.repair in ("queued", "running", "retry_pending"):
                log.info(
                    "resuming the repair of %s (%s) after a restart", row.alertname, row.component
                )
                self._enqueue(row, "resume")
        self._flusher = asyncio.create_task(self._flush_repeats_forever(), name="repeat-counts")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._tasks, *self._retries.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in self._queues.values():
            queue.clear()  # still "queued" in history: the next start resumes them
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush_repeats()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        _log_crash(task)

    # -- what the API reads ------------------------------------------------------

    def in_progress(self, component: str) -> bool:
        return self._locks[component].locked()

    def manual_intervention(self, component: str) -> dict[str, Any] | None:
        return self._manual.get(component)

    def last_attempt(self, component: str) -> AttemptRow | None:
        return self._last_attempt.get(component)

    def first_alert_since(self, component: str, since: float) -> float | None:
        """When the first alert about ``component`` arrived after ``since``."""
        times = [
            row.first_seen
            for row in self._alerts.values()
            if row.component == component and row.first_seen >= since
        ]
        return min(times, default=None)

    def rule_for(
        self, alertname: str, component: str, labels: dict[str, str]
    ) -> RecoveryRule | None:
        # The first rule that matches depends only on the name, the component and
        # the labels that rules' matchers name: remembered (a storm asks twice per
        # new alert: at triage and when its repair starts).
        key = (alertname, component, *[labels.get(k) for k in self._matcher_labels])
        try:
            return self._rules_by_key[key]
        except KeyError:
            pass
        found = None
        for rule in self.settings.rules:
            if rule.matches(alertname, component, labels):
                found = rule
                break
        if len(self._rules_by_key) >= 4096:
            self._rules_by_key.clear()
        self._rules_by_key[key] = found
        return found

    def is_auto_recoverable(self, component: str) -> bool:
        """Some rule can repair it, and it is not waiting for people."""
        return component not in self._manual and any(
            rule.actions and rule.component in (None, component) for rule in self.settings.rules
        )

    # -- alerts in ---------------------------------------------------------------

    async def receive(self, alerts: Sequence[Alert]) -> ReceiveResult:
        """Record the alerts and queue their repairs; return once they are recorded.

        What must survive a crash is in SQLite before this returns: a new alert
        (so that a restart can neither lose it nor repair it twice), a change of
        state (a resolved alert: a restart must not resume its repair), and any
        alert of this notification whose first write, by another notification
        still in flight, has not committed yet. A pure repeat of a recorded alert
        in the state it is already in (most of an alert storm) only counts, in
        memory; :meth:`flush_repeats` writes those counts within
        ``repeat_flush_interval`` seconds, and at stop. A crash can lose only
        that: the delivery counts (``notifications``, ``last_seen``) of repeats
        of the last interval, never an alert or a state.
        """
        now = time.time()
        known = self._alerts
        unflushed = self._unflushed
        in_flight = self._in_flight
        writes: dict[str, AlertRow] = {}
        waits: list[asyncio.Future[None]] = []
        events: list[tuple[float, str, str | None, dict[str, Any]]] = []
        start: list[str] = []
        new = duplicates = resolved = firing = 0
        # No await until every alert is in self._alerts: a concurrent delivery of
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
                unflushed[key] = row
                pending = in_flight.get(key)
                if pending is not None:
                    if not pending.done():
                        # Its first write is not committed yet: answer after it.
                        waits.append(pending)
                    elif pending.cancelled() or pending.exception() is not None:
                        # That write failed (its notification got a 5xx): this one
                        # writes the alert; a repair it queued never started.
                        if key not in writes:
                            writes[key] = row
                            if row.status == "firing" and row.repair == "queued":
                                start.append(key)
                    else:
                        del in_flight[key]
                continue
            labels = alert["labels"]
            component = labels.get("component")
            if row is None and status == "firing":
                new += 1
                repair = self._triage(alert)
                row = AlertRow(
                    key,
                    alert["fingerprint"],
                    alert["startsAt"],
                    labels["alertname"],
                    component,
                    labels,
                    "firing",
                    repair,
                    now,
                    now,
                    1,
                )
                if repair == "queued":
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
                self.audit.alert_triggered(
                    component or "-",
                    sev,
                    alertname=row.alertname,
                    fingerprint=row.fingerprint,
                )
            else:
                # Resolved: news for a firing alert, or for one never seen.
                resolved += 1
                if row is None:
                    row = AlertRow(
                        key,
                        alert["fingerprint"],
                        alert["startsAt"],
                        labels["alertname"],
                        component,
                        labels,
                        "resolved",
                        "none",
                        now,
                        now,
                        1,
                    )
                else:
                    row.status = "resolved"
                    row.last_seen = now
                    row.notifications += 1
                retry = self._retries.pop(key, None)
                if retry is not None:
                    retry.cancel()
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
                            "retry_cancelled": retry is not None,
                        },
                    )
                )
                self.audit.alert_resolved(
                    component or "-",
                    alertname=row.alertname,
                    fingerprint=row.fingerprint,
                )
            known[key] = row
            writes[key] = row
        if firing:
            self._received_firing.inc(firing)
        if firing < len(alerts):
            self._received_resolved.inc(len(alerts) - firing)
        if writes:
            try:
                written = self.history.submit_alerts(list(writes.values()), events)
            except Exception as exc:  # not even queued: as a write that failed
                written = asyncio.get_running_loop().create_future()
                written.set_exception(exc)
            for key in writes:
                in_flight[key] = written
            written.add_done_callback(functools.partial(self._written, list(writes)))
            waits.append(written)
        if self._flusher is None and self._unflushed:
            # Not started, or stopped: no flusher will come, write the counts now.
            waits.append(self._submit_repeats())
        self._last_intake = asyncio.get_running_loop().time()
        self._recording += 1
        try:
            for waiting in waits:
                # Shielded: a cancelled request must not cancel a write that other
                # notifications wait for too.
                await asyncio.shield(waiting)
        finally:
            self._recording -= 1
        if start:
            # Right after this answer is on its way, not before.
            asyncio.get_running_loop().call_soon(self._start_repairs, start)
        self._forget_old(now)
        return ReceiveResult(len(alerts), new, duplicates, resolved, len(start))

    def _start_repairs(self, keys: list[str]) -> None:
        alerts = self._alerts
        for key in keys:
            self._enqueue(alerts[key], "alert")

    def _enqueue(self, row: AlertRow, trigger: str) -> None:
        """Queue the repair of an alert behind those of its component."""
        if self._stopping:
            return  # still "queued" in history: the next start resumes it
        component = row.component
        assert component is not None
        self._queues[component].append((row.key, trigger, asyncio.get_running_loop().time()))
        if component not in self._workers:
            self._workers[component] = self._spawn(self._work(component))

    async def _work(self, component: str) -> None:
        """Run the queued repairs of ``component``, in order, until none is left."""
        queue = self._queues[component]
        try:
            while queue:
                await self._intake_lull(queue[0][2])
                key, trigger, _ = queue.popleft()
                try:
                    await self._repair_alert(key, trigger)
                except Exception:  # the queue goes on: one alert's fault stays its own
                    log.exception("the repair of alert %s failed unexpectedly", key)
        finally:
            # No await between the last look at the queue and this: an alert
            # queued from now on starts a new worker.
            if self._workers.get(component) is asyncio.current_task():
                del self._workers[component]

    async def _intake_lull(self, queued_at: float) -> None:
        """Wait until no notification has come for REPAIR_LULL seconds and none
        waits for its alerts to be written, or until ``repair_hold`` seconds
        after ``queued_at`` (loop time), when the repair was queued.

        Intake before repair: while an alert storm's notifications come in, the
        event loop answers them first (Alertmanager waits for each answer, and
        resends on a timeout); a repair's start-up (history writes, probes, a
        process for a ``command``) would compete with them. Outside a storm this
        costs a repair REPAIR_LULL seconds."""
        loop = asyncio.get_running_loop()
        deadline = queued_at + self.repair_hold
        while True:
            now = loop.time()
            quiet = self._last_intake + REPAIR_LULL - now
            wait = max(quiet, REPAIR_LULL if self._recording else 0.0)
            if wait <= 0 or now >= deadline:
                return
            await asyncio.sleep(min(wait, deadline - now))

    def _written(self, keys: list[str], written: asyncio.Future[None]) -> None:
        """A write of alerts ended: once committed, they are no longer in flight."""
        if written.cancelled() or written.exception() is not None:
            return  # left in _in_flight: the next delivery of each writes it again
        in_flight = self._in_flight
        for key in keys:
            if in_flight.get(key) is written:
                del in_flight[key]

    def _submit_repeats(self) -> asyncio.Future[None]:
        """Queue the write of the counts of repeats not written yet."""
        rows, self._unflushed = self._unflushed, {}
        counts = [(row.notifications, row.last_seen, key) for key, row in rows.items()]
        written = self.history.submit_touch_alerts(counts)

        def failed(done: asyncio.Future[None]) -> None:
            if done.cancelled() or done.exception() is not None:
                # Written next time (later counts of the same alert win).
                for key, row in rows.items():
                    self._unflushed.setdefault(key, row)

        written.add_done_callback(failed)
        return written

    async def flush_repeats(self) -> None:
        """Write the delivery counts of repeats that are only counted in memory."""
        if self._unflushed:
            await asyncio.shield(self._submit_repeats())

    async def _flush_repeats_forever(self) -> None:
        while True:
            await asyncio.sleep(self.repeat_flush_interval)
            try:
                await self.flush_repeats()
            except asyncio.CancelledError:
                raise
            except Exception:  # kept in memory; tried again next time
                log.exception("history: cannot write the counts of repeated alerts")

    def _triage(self, alert: Alert) -> str:
        labels = alert["labels"]
        component = labels.get("component")
        if component is None:
            return "no_component"
        if component not in self.config.components:
            return "unknown_component"
        if self.rule_for(labels["alertname"], component, labels) is None:
            return "no_rule"
        if not self.settings.enabled:
            return "disabled"
        return "queued"

    def _forget_old(self, now: float) -> None:
        # A scan of every alert in memory: not on every notification (with 10,000
        # alerts known, that would be most of a notification's cost), once a minute.
        if len(self._alerts) < 10_000 or now < self._next_forget:
            return
        self._next_forget = now + _FORGET_EVERY
        for key, row in list(self._alerts.items()):
            if row.status == "resolved" and now - row.last_seen > _FORGET_RESOLVED:
                del self._alerts[key]

    async def _set_repair(self, key: str, repair: str) -> None:
        row = self._alerts.get(key)
        if row is not None:
            row.repair = repair
        await self.history.set_alert_repair(key, repair)

    # -- repairs -------------------------------------------------------------------

    async def _repair_alert(self, key: str, trigger: str) -> None:
        try:
            await self._repair_alert_once(key, trigger)
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. history unwritable: try again later, never lose it
            log.exception("the repair of alert %s failed unexpectedly", key)
            if self._alerts[key].status == "firing" and not self._stopping:
                self._schedule_retry(key)

    async def _repair_alert_once(self, key: str, trigger: str) -> None:
        row = self._alerts[key]
        component = row.component
        assert component is not None
        rule = self.rule_for(row.alertname, component, row.labels)
        if rule is None:
            await self._set_repair(key, "no_rule")
            return
        # Everything up to the decision to retry or escalate holds the lock: two
        # alerts of one component must not both count the same failures and
        # escalate twice.
        async with self._locks[component]:
            row = self._alerts[key]
            if row.status == "resolved":
                await self._set_repair(key, "resolved")
                return
            if component in self._manual:
                await self._set_repair(key, "manual")
                return
            if rule.actions:
                state = await self.monitor.scheduler.check_component(component)
                if state.status is Status.HEALTHY:
                    log.info(
                        "%s is healthy again: no repair needed for %s", component, row.alertname
                    )
                    await self._set_repair(key, "not_needed")
                    return
            # Marks the alert's repair running. With no actions this records the
            # failed attempt (an attempt_id for people to quote) and escalation
            # follows at once.
            attempt = await self._attempt(component, rule, trigger, row)
            if attempt.status in ("success", "dry_run"):
                await self._set_repair(
                    key, "succeeded" if attempt.status == "success" else "dry_run"
                )
                return
            failed = await self.history.failed_attempts_since(
                component, time.time() - self.settings.window
            )
            reason = None
            if not rule.actions:
                reason = "no automatic repair is configured"
            elif all(action.get("permanent") for action in attempt.actions):
                reason = f"the repair cannot succeed: {attempt.error}"
            elif failed >= self.settings.max_attempts:
                reason = f"{failed} failed repair(s) within {self.settings.window:g}s"
            if reason is not None:
                await self._escalate(component, self._alerts[key], attempt, reason)
                await self._set_repair(key, "escalated")
            elif self._alerts[key].status == "firing" and not self._stopping:
                await self._set_repair(key, "retry_pending")
                self._schedule_retry(key)
            elif self._alerts[key].status == "resolved":
                # Resolved while this repair ran: nothing to retry.
                await self._set_repair(key, "resolved")

    def _schedule_retry(self, key: str) -> None:
        previous = self._retries.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._retries[key] = asyncio.create_task(self._retry_later(key))

    async def _retry_later(self, key: str) -> None:
        try:
            await asyncio.sleep(self.settings.retry_delay)
        except asyncio.CancelledError:
            row = self._alerts.get(key)
            if row is not None and row.status == "resolved":
                await self._set_repair(key, "resolved")
            raise
        self._retries.pop(key, None)
        row = self._alerts[key]
        if row.status == "firing":
            self._enqueue(row, "retry")

    async def recover_now(self, component: str) -> AttemptRow:
        """A repair asked for by a person (API, Python API): runs now or raises."""
        if component not in self.config.components:
            raise UnknownComponent(component)
        lock = self._locks[component]
        if lock.locked():
            raise RepairInProgress(component)
        rule = self.rule_for(MANUAL_ALERTNAME, component, {"component": component})
        async with lock:
            attempt = await self._attempt(component, rule, "manual", None)
        if attempt.status == "success" and component in self._manual:
            await self._clear_manual(component, f"repaired by attempt {attempt.attempt_id}")
        return attempt

    async def _attempt(
        self, component: str, rule: RecoveryRule | None, trigger: str, alert: AlertRow | None
    ) -> AttemptRow:
        async def start(row: AttemptRow) -> AttemptRow:
            # One transaction: the attempt, under a free id, and its alert's state.
            if alert is not None:
                alert.repair = "running"
            return await self.history.start_attempt(
                row, functools.partial(_attempt_ids, component), alert.key if alert else None
            )

        actions = [build_action(c) for c in (rule.actions if rule else [])]
        row = AttemptRow(
            "",  # the first free one of _attempt_ids(), given by start()
            component,
            alert.key if alert else None,
            alert.alertname if alert else MANUAL_ALERTNAME,
            trigger,
            time.time(),
            None,
            "running",
            None,
            [],
        )
        if not actions:
            steps = "; ".join(self.config.manual_steps(component))
            row = replace(
                row,
                ended_at=row.started_at,
                status="failure",
                error=f"no automatic repair is configured for {component}; manual steps: {steps}",
            )
            return await self._finish(await start(row))
        if self.settings.dry_run:
            planned = [
                {
                    "action": a.name,
                    "type": a.config.type,
                    "result": "dry_run",
                    "verified": False,
                    "output": "dry run: not run",
                }
                for a in actions
            ]
            for a in actions:
                self.metrics.attempts.labels(component, a.name, "dry_run").inc()
            log.warning(
                "DRY RUN: would repair %s with %s", component, ", ".join(a.name for a in actions)
            )
            row = replace(row, ended_at=time.time(), status="dry_run", actions=planned)
            return await self._finish(await start(row))

        row = await start(row)  # a crash from here on leaves it "running"
        self.metrics.in_progress.labels(component).set(1)
        outcomes: list[dict[str, Any]] = []
        success = False
        try:
            for action in actions:
                outcome = await self._run_action(component, action, alert)
                outcomes.append(outcome)
                row = replace(row, actions=list(outcomes))
                await self.history.save_attempt(row)
                if outcome["verified"]:
                    success = True
                    break
            if not success and outcomes and outcomes[-1]["result"] == "success":
                # The last action asked not to be verified: verify the whole repair.
                success, status = await self._verify(component)
            error = (
                None
                if success
                else next((o["error"] for o in reversed(outcomes) if o.get("error")), "not healthy")
            )
            row = replace(
                row,
                ended_at=time.time(),
                status="success" if success else "failure",
                error=error,
                actions=outcomes,
            )
        except asyncio.CancelledError:
            row = replace(
                row,
                ended_at=time.time(),
                status="interrupted",
                error="the monitor stopped during this repair",
                actions=outcomes,
            )
            await asyncio.shield(self._finish(row))
            raise
        finally:
            self.metrics.in_progress.labels(component).set(0)
        return await self._finish(row)

    async def _finish(self, row: AttemptRow) -> AttemptRow:
        """Store the attempt's end and its event; tell the audit log."""
        self._last_attempt[row.component] = row
        payload = row.as_json()
        await self.history.end_attempt(row)
        self.audit.recovery_attempt(
            {
                "attempt_id": row.attempt_id,
                "component": row.component,
                "alertname": row.alertname,
                "trigger": row.trigger,
                "success": row.status == "success",
                "status": row.status,
                "duration_ms": payload["duration_ms"],
                "actions": [a["action"] for a in row.actions],
                **({"error_message": row.error} if row.error else {}),
            }
        )
        return row

    async def _run_action(
        self, component: str, action: Action, alert: AlertRow | None
    ) -> dict[str, Any]:
        timeout = action.config.timeout or self.settings.action_timeout
        context = ActionContext(
            component=component,
            monitor=self.monitor,
            labels=alert.labels if alert else {},
            timeout=timeout,
            persist_target=self._persist_target,
        )
        started = time.monotonic()
        output, error, ok, permanent = "", None, False, False
        try:
            # Actions honour context.timeout themselves (a command is killed and
            # its output kept); the engine's hard stop comes a little later, so
            # that it does not cancel them at the same instant and lose that.
            output = await asyncio.wait_for(action.run(context), timeout + _ACTION_GRACE)
            ok = True
        except ActionError as exc:
            error, output, permanent = str(exc), exc.output, exc.permanent
        except asyncio.TimeoutError:
            error = f"{action.name} did not finish within {timeout:g}s"
        except Exception as exc:  # a broken action is a failed action, never a dead engine
            log.exception("action %s on %s crashed", action.name, component)
            error = f"{action.name} crashed: {describe_error(exc)}"
        verified = False
        if ok and action.config.verify:
            verified, status = await self._verify(component)
            if not verified:
                error = (
                    f"{component} still {status.value} {self.settings.verify_timeout:g}s"
                    f" after {action.name}"
                )
        duration = time.monotonic() - started
        result = "success" if ok and (verified or not action.config.verify) else "failure"
        self.metrics.attempts.labels(component, action.name, result).inc()
        self.metrics.duration.labels(component, action.name).observe(duration)
        secrets = [*action.secrets(), *self._component_secrets(component)]
        return {
            "action": action.name,
            "type": action.config.type,
            "result": result,
            "verified": verified,
            "permanent": permanent,
            "duration_ms": round(duration * 1000, 1),
            "output": scrub(output, secrets),
            "error": scrub(error, secrets) if error else None,
        }

    def _component_secrets(self, component: str) -> list[str]:
        return [s for p in self.monitor.scheduler.probes[component] for s in p.secrets()]

    async def _verify(self, component: str) -> tuple[bool, Status]:
        """Re-probe until healthy or the verification deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.verify_timeout
        while True:
            state = await self.monitor.scheduler.check_component(component)
            if state.status is Status.HEALTHY:
                return True, state.status
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False, state.status
            await asyncio.sleep(min(self.settings.verify_interval, remaining))

    async def _persist_target(self, component: str, target: str) -> None:
        await self.history.set_setting(f"{_TARGET}{component}", target)
        await self.history.add_event("storage_target", component, {"target": target})

    # -- people ------------------------------------------------------------------

    async def _escalate(
        self, component: str, alert: AlertRow | None, attempt: AttemptRow | None, reason: str
    ) -> None:
        if component in self._manual:
            return  # already with people: one escalation per hand-over
        steps = self.config.manual_steps(component)
        info = {
            "since": time.time(),
            "reason": reason,
            "alertname": alert.alertname if alert else None,
            "attempt_id": attempt.attempt_id if attempt else None,
            "manual_steps": steps,
        }
        self._manual[component] = info
        self.metrics.escalations.labels(component).inc()
        self.metrics.manual_intervention.labels(component).set(1)
        await self.history.set_setting(f"{_MANUAL}{component}", info)
        await self.history.add_event("escalation", component, info)
        self.audit.escalation(component, info)

    async def _clear_manual(self, component: str, reason: str) -> None:
        if self._manual.pop(component, None) is None:
            return
        self.metrics.manual_intervention.labels(component).set(0)
        await self.history.set_setting(f"{_MANUAL}{component}", None)
        await self.history.add_event("manual_intervention_cleared", component, {"reason": reason})

    def _on_transition(self, transition: Transition) -> None:
        if self._stopping:
            return  # history is closing: the next start reads the state afresh
        if transition.to_status is Status.HEALTHY and transition.component in self._manual:
            self._spawn(self._clear_manual(transition.component, "the component is healthy again"))


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("recovery task failed", exc_info=task.exception())


def _attempt_ids(component: str) -> Iterator[str]:
    """Attempt ids to pick from, first free one wins: the component and the time
    in milliseconds, counting up from now."""
    return (f"{component}_{stamp}" for stamp in itertools.count(int(time.time() * 1000)))
