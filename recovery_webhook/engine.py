"""The recovery engine: alert -> rule -> actions -> verification -> escalation.

It puts the parts together and decides, for each owed repair, what to do:

* :mod:`~recovery_webhook.ledger` records each alert instance once;
* :mod:`~recovery_webhook.repairs` runs one repair at a time per component
  across the group, under the component's lease;
* :mod:`~recovery_webhook.runner` runs an attempt's actions and verifies them;
* :mod:`~recovery_webhook.policy` says when people must take over, and
  :mod:`~recovery_webhook.escalation` hands the component to them;
* :mod:`~recovery_webhook.group` says what the other monitors see: no repair
  runs while a live monitor sees the component healthy.

A failed repair of a still-firing alert is retried after ``retry_delay``; a
resolved alert cancels that. After ``max_attempts`` failed repairs within
``window`` the component is handed to people (manual intervention).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from exporter.audit import AuditLog
from exporter.model import Status
from exporter.monitor import Monitor
from exporter.state import Transition
from recovery_webhook.actions.reaper import Reaper
from recovery_webhook.alerts import Alert
from recovery_webhook.config import AppConfig, RecoveryRule
from recovery_webhook.escalation import Handover
from recovery_webhook.group import Group, Snapshot
from recovery_webhook.leases import HeldLease, Leases
from recovery_webhook.ledger import AlertLedger, ReceiveResult
from recovery_webhook.metrics import RecoveryMetrics
from recovery_webhook.policy import escalation_reason
from recovery_webhook.repairs import RepairInProgress, RepairQueue, lease_name
from recovery_webhook.runner import INTERRUPTED, MANUAL_ALERTNAME, AttemptRunner
from recovery_webhook.states import AttemptStatus, RepairState, Trigger
from recovery_webhook.store import AlertRow, AttemptRow, Store
from recovery_webhook.targets import StorageTargets

log = logging.getLogger(__name__)

__all__ = ["RecoveryEngine", "RepairInProgress", "UnknownComponent"]


class UnknownComponent(KeyError):
    """Not a configured component (HTTP 404)."""


class RecoveryEngine:
    def __init__(
        self,
        config: AppConfig,
        monitor: Monitor,
        store: Store,
        audit: AuditLog,
        group: Group,
        leases: Leases,
        reaper: Reaper,
    ) -> None:
        self.config = config
        self.settings = config.recovery
        self.monitor = monitor
        self.store = store
        self.audit = audit
        self.group = group
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
        self.targets = StorageTargets(monitor.scheduler, store, group.name)
        self.handover = Handover(config, store, audit, self.metrics, group.name)
        self.runner = AttemptRunner(
            config, monitor, store, audit, self.metrics, group.name, self.targets, reaper
        )
        self.ledger = AlertLedger(
            store, audit, self.metrics, group.name, self._triage, self._queued
        )
        self.queue = RepairQueue(
            store, leases, self.ledger, self._repair, self._end_left_running, self._store_down
        )
        self._matcher_labels = sorted({k for rule in self.settings.rules for k in rule.matchers})
        self._rules_by_key: dict[tuple[str | None, ...], RecoveryRule | None] = {}
        self._last_attempt: dict[str, AttemptRow] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.store.when_available(self._store_back)
        if self.store.available:
            await self._load()
        self.group.on_refresh(self._refreshed)
        self.monitor.state.add_listener(self._on_transition)
        self.ledger.start()

    async def stop(self) -> None:
        self._stopping = True
        await self.queue.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.ledger.stop()

    async def _load(self) -> None:
        await self.ledger.load(time.time() - max(self.settings.window, 86400.0))
        self.handover.follow(await self.store.settings.with_prefix("manual:"))
        self.targets.follow(await self.store.settings.with_prefix("target:"))

    # -- what the API reads ------------------------------------------------------------

    def in_progress(self, component: str) -> bool:
        """A repair of ``component`` runs, on this monitor or on another."""
        if self.queue.repairing(component):
            return True
        snapshot = self.group.snapshot
        if snapshot is None or not self.store.available:
            return False
        lease = snapshot.leases.get(lease_name(component))
        last = snapshot.last_attempts.get(component)
        return (
            lease is not None
            and lease.expires_at > snapshot.at
            and lease.holder != self.group.incarnation
            and last is not None
            and last.status == AttemptStatus.RUNNING
        )

    def manual_intervention(self, component: str) -> dict[str, Any] | None:
        return self.handover.info(component)

    def last_attempt(self, component: str) -> AttemptRow | None:
        candidates = [self._last_attempt.get(component)]
        if self.group.snapshot is not None:
            candidates.append(self.group.snapshot.last_attempts.get(component))
        found = [a for a in candidates if a is not None]
        return max(found, key=lambda a: (a.started_at, a.ended_at or 0.0), default=None)

    def first_alert_since(self, component: str, since: float) -> float | None:
        """When the first alert about ``component`` arrived after ``since``, at
        this monitor or (as of the last refresh) at any of the group."""
        times = [self.ledger.first_since(component, since)]
        snapshot = self.group.snapshot
        if snapshot is not None and snapshot.first_alerts.get(component, 0.0) >= since:
            times.append(snapshot.first_alerts[component])
        return min((t for t in times if t is not None), default=None)

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
        found = next(
            (rule for rule in self.settings.rules if rule.matches(alertname, component, labels)),
            None,
        )
        if len(self._rules_by_key) >= 4096:
            self._rules_by_key.clear()
        self._rules_by_key[key] = found
        return found

    def is_auto_recoverable(self, component: str) -> bool:
        """Some rule can repair it, and it is not waiting for people."""
        return self.handover.info(component) is None and any(
            rule.actions and rule.component in (None, component) for rule in self.settings.rules
        )

    # -- alerts in -----------------------------------------------------------------------

    async def receive(self, alerts: Sequence[Alert]) -> ReceiveResult:
        return await self.ledger.receive(alerts)

    def _triage(self, alert: Alert) -> RepairState:
        labels = alert["labels"]
        component = labels.get("component")
        if component is None:
            return RepairState.NO_COMPONENT
        if component not in self.config.components:
            return RepairState.UNKNOWN_COMPONENT
        if self.rule_for(labels["alertname"], component, labels) is None:
            return RepairState.NO_RULE
        if not self.settings.enabled:
            return RepairState.DISABLED
        return RepairState.QUEUED

    def _queued(self, rows: list[AlertRow]) -> None:
        for row in rows:
            if row.component is not None:
                self.queue.kick(row.component, row.alertname)

    # -- repairs -------------------------------------------------------------------------

    async def _repair(self, row: AlertRow, held: HeldLease, trigger: Trigger) -> None:
        """Decide and run the repair owed to ``row``, under the component's lease."""
        component = row.component
        assert component is not None
        store = self.store
        rule = self.rule_for(row.alertname, component, row.labels)
        if rule is None:
            await self._set(row.key, RepairState.NO_RULE, held.lease)
            return
        if self.handover.is_manual(component):
            await self._set(row.key, RepairState.MANUAL, held.lease)
            return
        if rule.actions:
            state = await self.monitor.scheduler.check_component(component)
            if state.status is Status.HEALTHY:
                log.info("%s is healthy again: no repair needed for %s", component, row.alertname)
                await self._set(row.key, RepairState.NOT_NEEDED, held.lease)
                return
            wait = self.config.check_interval + self.group.beat + 1.0
            elsewhere = await self.group.healthy_elsewhere(component, state.since, wait)
            if elsewhere is not None:
                await self._wait_for_agreement(row, held, elsewhere)
                return
        self.ledger.note_repair(row.key, RepairState.RUNNING)
        attempt = await self.runner.run(component, rule, trigger, row, held)
        self._last_attempt[component] = attempt
        if attempt.status in (AttemptStatus.SUCCESS, AttemptStatus.DRY_RUN):
            done = RepairState.SUCCEEDED if attempt.status == "success" else RepairState.DRY_RUN
            await self._set(row.key, done, held.lease)
            return
        failed = await store.attempts.failed_since(component, time.time() - self.settings.window)
        reason = escalation_reason(self.settings, rule, attempt, failed)
        if reason is not None:
            await self.handover.escalate(
                component, reason, held.lease, row.alertname, attempt.attempt_id
            )
            await self._set(row.key, RepairState.ESCALATED, held.lease)
            return
        if self._stopping:
            return  # still running in the store: the next holder resumes it
        retry_at = time.time() + self.settings.retry_delay
        # A retry if it still fires; resolved while this repair ran, nothing to retry.
        repair = await store.alerts.retry_unless_resolved(row.key, held.lease, retry_at)
        self.ledger.note_repair(row.key, repair)
        if repair == RepairState.RETRY_PENDING:
            self.queue.kick_at(component, retry_at)

    async def _set(self, key: str, repair: RepairState, *args: Any, **kwargs: Any) -> None:
        await self.store.alerts.set_repair(key, repair, *args, **kwargs)
        self.ledger.note_repair(key, repair)

    async def _wait_for_agreement(self, row: AlertRow, held: HeldLease, elsewhere: str) -> None:
        """Another live monitor sees the component healthy: this one's own path
        to it may be what is broken. No repair on one monitor's word; look again
        after ``retry_delay``."""
        component = row.component
        assert component is not None
        note = f"{elsewhere} sees {component} healthy"
        events = []
        if row.repair != RepairState.WAITING:
            log.warning(
                "no repair of %s for %s: %s (this monitor %s cannot reach it)",
                component,
                row.alertname,
                note,
                self.group.name,
            )
            events.append(
                (
                    time.time(),
                    "repair_waiting",
                    component,
                    {"alertname": row.alertname, "reason": note, "monitor": self.group.name},
                )
            )
        retry_at = time.time() + self.settings.retry_delay
        await self._set(
            row.key,
            RepairState.WAITING,
            held.lease,
            retry_at=retry_at,
            note=note,
            events=events,
            monitor=self.group.name,
        )
        self.queue.kick_at(component, retry_at)

    async def _end_left_running(self, component: str, held: HeldLease) -> None:
        """Attempts a previous holder of the lease left running are interrupted."""
        for attempt in await self.store.attempts.interrupt(
            component, held.lease, time.time(), INTERRUPTED
        ):
            log.warning(
                "repair %s of %s was cut off (%s ran it)",
                attempt.attempt_id,
                component,
                attempt.monitor or "a monitor",
            )
            for action in attempt.actions or [{"action": "unknown"}]:
                self.metrics.attempts.labels(
                    component, action.get("action", "unknown"), "interrupted"
                ).inc()
            self.runner.audit_attempt(attempt)

    async def recover_now(self, component: str) -> AttemptRow:
        """A repair asked for by a person (API, Python API): runs now or raises."""
        if component not in self.config.components:
            raise UnknownComponent(component)
        rule = self.rule_for(MANUAL_ALERTNAME, component, {"component": component})

        async def repair(held: HeldLease) -> AttemptRow:
            return await self.runner.run(component, rule, Trigger.MANUAL, None, held)

        attempt = await self.queue.run_now(component, repair)
        self._last_attempt[component] = attempt
        if attempt.status == AttemptStatus.SUCCESS:
            await self.handover.clear(component, f"repaired by attempt {attempt.attempt_id}")
        return attempt

    # -- the group and the store -----------------------------------------------------------

    async def _refreshed(self, snapshot: Snapshot) -> None:
        self.handover.follow(
            {
                k[len("manual:") :]: v
                for k, v in snapshot.settings.items()
                if k.startswith("manual:")
            }
        )
        self.targets.follow(
            {
                k[len("target:") :]: v
                for k, v in snapshot.settings.items()
                if k.startswith("target:")
            }
        )
        if not self.settings.enabled:
            return
        owed = await self.store.alerts.owed()
        running = await self.store.attempts.running_components()
        free = {
            name
            for name in self.config.components
            if (lease := snapshot.leases.get(lease_name(name))) is None
            or lease.expires_at <= snapshot.at
        }
        await self.queue.sweep(
            {c: due for c, due in owed.items() if c in self.config.components},
            running & set(self.config.components),
            free,
        )

    def _store_down(self, component: str, alertname: str | None) -> None:
        self.handover.escalate_offline(component, alertname)

    async def _store_back(self) -> None:
        await self._load()
        for component in self.handover.store_is_back():
            self.queue.kick(component)

    def _on_transition(self, transition: Transition) -> None:
        if self._stopping:
            return
        component = transition.component
        if transition.to_status is Status.HEALTHY and self.handover.info(component) is not None:
            task = asyncio.get_running_loop().create_task(
                self.handover.clear(component, "the component is healthy again")
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
