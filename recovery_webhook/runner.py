"""One repair attempt: its actions in order, each under a timeout and then verified
by re-probing, until the component is healthy or the actions run out.

Every attempt is written before its first action, with its alert marked running
in the same transaction (so a crash leaves it to be marked interrupted by the
next holder of the component's lease), after every action, and when it ends,
with its feed event; every one of these writes is fenced by the lease. An
action sees only its :class:`~recovery_webhook.actions.base.ActionContext`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from exporter.audit import AuditLog
from exporter.model import Status
from exporter.monitor import Monitor
from exporter.probes.base import describe_error, scrub
from recovery_webhook.actions import ActionContext, ActionError, build_action
from recovery_webhook.actions.base import Action
from recovery_webhook.actions.reaper import Reaper
from recovery_webhook.config import AppConfig, RecoveryRule
from recovery_webhook.leases import HeldLease
from recovery_webhook.metrics import RecoveryMetrics
from recovery_webhook.states import AttemptStatus
from recovery_webhook.store import AlertRow, AttemptRow, Lease, Store
from recovery_webhook.targets import StorageTargets

log = logging.getLogger(__name__)

MANUAL_ALERTNAME = "ManualRecovery"
# Its monitor stopped, died or lost its lease while it ran.
INTERRUPTED = "the monitor stopped during this repair"
# Beyond an action's own timeout, before the runner cancels it (see _run_action).
_ACTION_GRACE = 5.0


class AttemptRunner:
    def __init__(
        self,
        config: AppConfig,
        monitor: Monitor,
        store: Store,
        audit: AuditLog,
        metrics: RecoveryMetrics,
        name: str,
        targets: StorageTargets,
        reaper: Reaper,
    ) -> None:
        self.config = config
        self.settings = config.recovery
        self.monitor = monitor
        self.store = store
        self.audit = audit
        self.metrics = metrics
        self.name = name
        self.targets = targets
        self.reaper = reaper

    async def run(
        self,
        component: str,
        rule: RecoveryRule | None,
        trigger: str,
        alert: AlertRow | None,
        held: HeldLease | None,
    ) -> AttemptRow:
        actions = [build_action(c) for c in (rule.actions if rule else [])]
        row = AttemptRow(
            "",  # the first free one of attempt_ids(), given by the store
            component,
            alert.key if alert else None,
            alert.alertname if alert else MANUAL_ALERTNAME,
            trigger,
            time.time(),
            None,
            AttemptStatus.RUNNING,
            None,
            [],
            monitor=self.name,
            token=held.token if held else None,
        )
        if not actions:
            steps = "; ".join(self.config.manual_steps(component))
            row = replace(
                row,
                ended_at=row.started_at,
                status=AttemptStatus.FAILURE,
                error=f"no automatic repair is configured for {component}; manual steps: {steps}",
            )
            return await self.finish(await self._start(row, alert, held), held)
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
            row = replace(row, ended_at=time.time(), status=AttemptStatus.DRY_RUN, actions=planned)
            return await self.finish(await self._start(row, alert, held), held)

        row = await self._start(row, alert, held)  # a crash from here on leaves it "running"
        self.metrics.in_progress.labels(component).set(1)
        outcomes: list[dict[str, Any]] = []
        success = False
        try:
            for action in actions:
                outcome = await self._run_action(component, action, alert)
                outcomes.append(outcome)
                row = replace(row, actions=list(outcomes))
                await self.store.attempts.save(row, _lease(held))
                if outcome["verified"]:
                    success = True
                    break
            if not success and outcomes and outcomes[-1]["result"] == "success":
                # The last action asked not to be verified: verify the whole repair.
                success, _ = await self.verify(component)
            error = (
                None
                if success
                else next((o["error"] for o in reversed(outcomes) if o.get("error")), "not healthy")
            )
            row = replace(
                row,
                ended_at=time.time(),
                status=AttemptStatus.SUCCESS if success else AttemptStatus.FAILURE,
                error=error,
                actions=outcomes,
            )
        except asyncio.CancelledError:
            if held is None or not held.lost.is_set():
                ended = replace(
                    row,
                    ended_at=time.time(),
                    status=AttemptStatus.INTERRUPTED,
                    error=INTERRUPTED,
                    actions=outcomes,
                )
                # Written as the monitor stops; with the lease lost, the next
                # holder ends it instead.
                await asyncio.shield(self.finish(ended, held))
            raise
        finally:
            self.metrics.in_progress.labels(component).set(0)
        return await self.finish(row, held)

    async def _start(
        self, row: AttemptRow, alert: AlertRow | None, held: HeldLease | None
    ) -> AttemptRow:
        # One transaction: the attempt, under a free id, and its alert's state.
        started = await self.store.attempts.start(
            row,
            _lease(held),
            functools.partial(attempt_ids, row.component),
            alert.key if alert else None,
        )
        if alert is not None:
            alert.repair = "running"
        return started

    async def finish(self, row: AttemptRow, held: HeldLease | None) -> AttemptRow:
        """Store the attempt's end and its event; tell the audit log."""
        await self.store.attempts.end(row, _lease(held))
        self.audit_attempt(row)
        return row

    def audit_attempt(self, row: AttemptRow) -> None:
        self.audit.recovery_attempt(
            {
                "attempt_id": row.attempt_id,
                "component": row.component,
                "alertname": row.alertname,
                "trigger": row.trigger,
                "monitor": row.monitor,
                "success": row.status == AttemptStatus.SUCCESS,
                "status": row.status,
                "duration_ms": row.as_json()["duration_ms"],
                "actions": [a["action"] for a in row.actions],
                **({"error_message": row.error} if row.error else {}),
            }
        )

    def _context(self, component: str, alert: AlertRow | None, timeout: float) -> ActionContext:
        scheduler = self.monitor.scheduler

        async def reset_clients() -> int:
            await scheduler.reset(component)
            return len(scheduler.probes[component])

        return ActionContext(
            component=component,
            probes=self.config.components[component].probes,
            session=self.monitor.context.session,
            reset_clients=reset_clients,
            storage=self.targets.switch_for(component),
            process_groups=self.reaper,
            labels=alert.labels if alert else {},
            timeout=timeout,
        )

    async def _run_action(
        self, component: str, action: Action, alert: AlertRow | None
    ) -> dict[str, Any]:
        timeout = action.config.timeout or self.settings.action_timeout
        context = self._context(component, alert, timeout)
        started = time.monotonic()
        output, error, ok, permanent = "", None, False, False
        try:
            # Actions honour context.timeout themselves (a command is killed and
            # its output kept); the hard stop comes a little later, so that it
            # does not cancel them at the same instant and lose that.
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
            verified, status = await self.verify(component)
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

    async def verify(self, component: str) -> tuple[bool, Status]:
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


def _lease(held: HeldLease | None) -> Lease | None:
    return held.lease if held is not None else None


def attempt_ids(component: str) -> Iterator[str]:
    """Attempt ids to pick from, first free one wins: the component and the time
    in milliseconds, counting up from now."""
    return (f"{component}_{stamp}" for stamp in itertools.count(int(time.time() * 1000)))
