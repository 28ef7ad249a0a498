"""The recovery engine: alert -> rule -> actions -> verification -> escalation.

* An alert instance (fingerprint + startsAt) runs at most one repair, however
  often Alertmanager repeats it and however many Alertmanagers send it.
* One repair at a time per component; each action under a timeout, then the
  component is re-probed until healthy or a deadline. A failed action hands
  over to the next one.
* A failed repair of a still-firing alert is retried after ``retry_delay``; a
  resolved alert cancels that. After ``max_attempts`` failed repairs within
  ``window`` the component is handed to people (manual intervention).
* Every attempt is written to history before it starts (so a crash leaves it
  marked interrupted at the next start) and again when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

from exporter.audit import AuditLog
from exporter.model import Status
from exporter.monitor import Monitor
from exporter.probes.base import describe_error, scrub
from exporter.state import Transition
from recovery_webhook.actions import ActionContext, ActionError, build_action
from recovery_webhook.actions.base import Action
from recovery_webhook.alerts import Alert
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
        self._locks = {name: asyncio.Lock() for name in config.components}
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
                self._spawn(self._repair_alert(row.key, trigger="resume"))

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._tasks, *self._retries.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)
        return task

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
        for rule in self.settings.rules:
            if rule.matches(alertname, component, labels):
                return rule
        return None

    def is_auto_recoverable(self, component: str) -> bool:
        rule = self.rule_for("PipelineComponentDown", component, {"component": component})
        return bool(rule and rule.actions) and component not in self._manual

    # -- alerts in ---------------------------------------------------------------

    async def receive(self, alerts: list[Alert]) -> ReceiveResult:
        """Record the alerts and queue their repairs; return at once."""
        now = time.time()
        upserts: dict[str, AlertRow] = {}
        events: list[tuple[float, str, str | None, dict[str, Any]]] = []
        start: list[str] = []
        new = duplicates = resolved = 0
        # No await until every alert is in self._alerts: a concurrent delivery of
        # the same alert (a second Alertmanager) then sees it as a repeat.
        for alert in alerts:
            row = self._alerts.get(alert.key)
            if alert.status == "firing":
                if row is None:
                    new += 1
                    repair = self._triage(alert)
                    row = AlertRow(
                        alert.key,
                        alert.fingerprint,
                        alert.starts_at,
                        alert.alertname,
                        alert.component,
                        alert.labels,
                        "firing",
                        repair,
                        now,
                        now,
                        1,
                    )
                    if repair == "queued":
                        start.append(alert.key)
                    events.append(
                        (
                            now,
                            "alert",
                            alert.component,
                            {
                                "alertname": alert.alertname,
                                "status": "firing",
                                "severity": alert.severity,
                                "fingerprint": alert.fingerprint,
                                "starts_at": alert.starts_at,
                                "repair": repair,
                                "summary": alert.annotations.get("summary"),
                            },
                        )
                    )
                    self.audit.alert_triggered(
                        alert.component or "-",
                        alert.severity,
                        alertname=alert.alertname,
                        fingerprint=alert.fingerprint,
                    )
                else:
                    duplicates += 1
                    row = _delivered_again(row, now, row.status)
            else:
                if row is not None and row.status == "resolved":
                    duplicates += 1
                    row = _delivered_again(row, now, row.status)
                else:
                    resolved += 1
                    repair = row.repair if row is not None else "none"
                    if row is None:
                        row = AlertRow(
                            alert.key,
                            alert.fingerprint,
                            alert.starts_at,
                            alert.alertname,
                            alert.component,
                            alert.labels,
                            "resolved",
                            repair,
                            now,
                            now,
                            1,
                        )
                    else:
                        row = _delivered_again(row, now, "resolved")
                    retry = self._retries.pop(alert.key, None)
                    if retry is not None:
                        retry.cancel()
                    events.append(
                        (
                            now,
                            "alert",
                            alert.component,
                            {
                                "alertname": alert.alertname,
                                "status": "resolved",
                                "fingerprint": alert.fingerprint,
                                "starts_at": alert.starts_at,
                                "retry_cancelled": retry is not None,
                            },
                        )
                    )
                    self.audit.alert_resolved(
                        alert.component or "-",
                        alertname=alert.alertname,
                        fingerprint=alert.fingerprint,
                    )
            self._alerts[alert.key] = row
            upserts[alert.key] = row
        for status, count in Counter(alert.status for alert in alerts).items():
            self.metrics.alerts_received.labels(status).inc(count)
        await self.history.record_alerts(list(upserts.values()), events)
        for key in start:
            self._spawn(self._repair_alert(key, trigger="alert"))
        self._forget_old(now)
        return ReceiveResult(len(alerts), new, duplicates, resolved, len(start))

    def _triage(self, alert: Alert) -> str:
        component = alert.component
        if component is None:
            return "no_component"
        if component not in self.config.components:
            return "unknown_component"
        if self.rule_for(alert.alertname, component, alert.labels) is None:
            return "no_rule"
        if not self.settings.enabled:
            return "disabled"
        return "queued"

    def _forget_old(self, now: float) -> None:
        if len(self._alerts) < 10_000:
            return
        for key, row in list(self._alerts.items()):
            if row.status == "resolved" and now - row.last_seen > _FORGET_RESOLVED:
                del self._alerts[key]

    async def _set_repair(self, key: str, repair: str) -> None:
        row = self._alerts.get(key)
        if row is not None:
            self._alerts[key] = replace(row, repair=repair)
        await self.history.set_alert_repair(key, repair)

    # -- repairs -------------------------------------------------------------------

    async def _repair_alert(self, key: str, trigger: str) -> None:
        row = self._alerts[key]
        component = row.component
        assert component is not None
        rule = self.rule_for(row.alertname, component, row.labels)
        if rule is None:
            await self._set_repair(key, "no_rule")
            return
        async with self._locks[component]:
            row = self._alerts[key]
            if row.status == "resolved":
                await self._set_repair(key, "resolved")
                return
            if component in self._manual:
                await self._set_repair(key, "manual")
                return
            if not rule.actions:
                await self._escalate(component, row, None, "no automatic repair is configured")
                await self._set_repair(key, "escalated")
                return
            state = await self.monitor.scheduler.check_component(component)
            if state.status is Status.HEALTHY:
                log.info("%s is healthy again: no repair needed for %s", component, row.alertname)
                await self._set_repair(key, "not_needed")
                return
            await self._set_repair(key, "running")
            attempt = await self._attempt(component, rule, trigger, row)
        if attempt.status in ("success", "dry_run"):
            await self._set_repair(key, "succeeded" if attempt.status == "success" else "dry_run")
            return
        since = time.time() - self.settings.window
        failed = await self.history.failed_attempts_since(component, since)
        if failed >= self.settings.max_attempts:
            await self._escalate(
                component,
                self._alerts[key],
                attempt,
                f"{failed} failed repair(s) within {self.settings.window:g}s",
            )
            await self._set_repair(key, "escalated")
            return
        if self._alerts[key].status == "firing" and not self._stopping:
            await self._set_repair(key, "retry_pending")
            self._retries[key] = asyncio.create_task(self._retry_later(key))
        elif self._alerts[key].status == "resolved":
            # Resolved while this repair ran: nothing to retry (it was not left "running").
            await self._set_repair(key, "resolved")

    async def _retry_later(self, key: str) -> None:
        try:
            await asyncio.sleep(self.settings.retry_delay)
        except asyncio.CancelledError:
            row = self._alerts.get(key)
            if row is not None and row.status == "resolved":
                await self._set_repair(key, "resolved")
            raise
        self._retries.pop(key, None)
        if self._alerts[key].status == "firing":
            self._spawn(self._repair_alert(key, trigger="retry"))

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
        attempt_id = await self._new_attempt_id(component)
        actions = [build_action(c) for c in (rule.actions if rule else [])]
        row = AttemptRow(
            attempt_id,
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
            await self.history.save_attempt(row)
            return await self._finish(row)
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
            await self.history.save_attempt(row)
            return await self._finish(row)

        await self.history.save_attempt(row)  # a crash from here on leaves it "running"
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
            await asyncio.shield(self.history.save_attempt(row))
            await asyncio.shield(self._finish(row))
            raise
        finally:
            self.metrics.in_progress.labels(component).set(0)
        await self.history.save_attempt(row)
        return await self._finish(row)

    async def _finish(self, row: AttemptRow) -> AttemptRow:
        self._last_attempt[row.component] = row
        payload = row.as_json()
        await self.history.add_event("recovery_attempt", row.component, payload, ts=row.ended_at)
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

    async def _new_attempt_id(self, component: str) -> str:
        stamp = int(time.time() * 1000)
        while await self.history.attempt_id_taken(f"{component}_{stamp}"):
            stamp += 1
        return f"{component}_{stamp}"

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
        if transition.to_status is Status.HEALTHY and transition.component in self._manual:
            self._spawn(self._clear_manual(transition.component, "the component is healthy again"))


def _delivered_again(row: AlertRow, now: float, status: str) -> AlertRow:
    """``row`` as one more delivery of its alert leaves it. dataclasses.replace()
    at half the cost: an alert storm takes this path for nearly every alert."""
    return AlertRow(
        row.key,
        row.fingerprint,
        row.starts_at,
        row.alertname,
        row.component,
        row.labels,
        status,
        row.repair,
        row.first_seen,
        now,
        row.notifications + 1,
    )


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("recovery task failed", exc_info=task.exception())
