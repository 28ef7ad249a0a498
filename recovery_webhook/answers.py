"""What the API and the page answer: the pipeline as the group sees it, from the
group's store, and from memory while the store is unreachable.

Every monitor of a group gives the same answers: the components' statuses come
from the combined view (a part is up when any live monitor sees it up), and the
history, uptime and totals from the one store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from exporter.model import Status
from exporter.redact import mask_in
from exporter.state import ComponentState, PipelineState
from recovery_webhook import slo
from recovery_webhook.editor import EditorView, editor_view, incident_view, iso
from recovery_webhook.incidents import EVENT_KINDS as INCIDENT_EVENT_KINDS
from recovery_webhook.incidents import derive_incidents
from recovery_webhook.schemas import (
    Attempt,
    ComponentChecks,
    ComponentDetail,
    ErrorBudget,
    HistoryAvailability,
    HistoryEvent,
    Incident,
    MetricsSummary,
    MonitorView,
    PipelineStatus,
    ProbeDetail,
    RecentFailure,
    RecoveryStats,
    Uptime,
)
from recovery_webhook.store import StoreError

if TYPE_CHECKING:
    from recovery_webhook.service import PipelineService

_DAY = 86400.0
UPTIME_WINDOWS = {"24h": _DAY, "7d": 7 * _DAY, "30d": 30 * _DAY}
# The newest incident-related events read to derive the recent incidents.
_INCIDENT_EVENTS_READ = 500


class Answers:
    def __init__(self, service: PipelineService) -> None:
        self.service = service
        self.config = service.config
        self.store = service.store
        self.group = service.group
        self.engine = service.engine
        self._last_uptime: Uptime = {"24h": None, "7d": None, "30d": None}
        self._last_totals: dict[str, tuple[int, int]] = {}

    # -- for editors ---------------------------------------------------------------------

    def editor(self, now: float | None = None) -> EditorView:
        now = time.time() if now is None else now
        state = self.group.combined_state()
        return editor_view(
            state,
            now=now,
            max_age=3 * self.config.check_interval + 5,
            tz=self.config.status_page.timezone,
            repairing=self.engine.in_progress,
            manual=lambda c: self.engine.manual_intervention(c) is not None,
            notified_at=lambda c: self.engine.first_alert_since(c, state.components[c].since),
            contact=self.config.status_page.newsroom_contact,
        )

    async def incidents(self, now: float | None = None, limit: int = 10) -> list[Incident]:
        """The recent incidents from history, newest first, in editors' words (none
        while the store is unreachable)."""
        now = time.time() if now is None else now
        try:
            events = await self.store.events.recent(
                _INCIDENT_EVENTS_READ, kinds=INCIDENT_EVENT_KINDS
            )
        except StoreError:
            return []
        views = []
        for incident in derive_incidents(events, limit):
            name = incident.component
            known = name in self.config.components
            state = self.service.monitor.state.components.get(name)
            views.append(
                incident_view(
                    incident,
                    state.display_name if state else name.replace("_", " "),
                    now=now,
                    tz=self.config.status_page.timezone,
                    repairing=known and self.engine.in_progress(name),
                    manual=known and self.engine.manual_intervention(name) is not None,
                )
            )
        return views

    async def uptime(self, now: float | None = None) -> Uptime:
        """Uptime over each window; while the store is unreachable, the last figures."""
        now = time.time() if now is None else now
        try:
            figures = [await self._uptime(window, now) for window in UPTIME_WINDOWS.values()]
        except StoreError:
            return self._last_uptime
        self._last_uptime = {"24h": figures[0], "7d": figures[1], "30d": figures[2]}
        return self._last_uptime

    async def _uptime(self, window: float, now: float) -> float | None:
        """Share of the observed time in ``window`` when articles could be published."""
        start = now - window
        transitions = await self.store.events.transitions_since(start)
        ratio = slo.availability(transitions, start, now).ratio
        return None if ratio is None else round(100.0 * ratio, 3)

    def history(self) -> HistoryAvailability:
        found = self.store.availability()
        return HistoryAvailability(
            available=found.available,
            since=iso(found.since),
            error=found.error,
            buffered_rows=found.buffered_rows,
            dropped_rows=found.dropped_rows,
        )

    # -- for engineers ---------------------------------------------------------------------

    async def error_budget(self, now: float | None = None) -> ErrorBudget | None:
        """The publishing SLO over ``slo.window``; None while the store is unreachable."""
        now = time.time() if now is None else now
        try:
            budget = await slo.publishing_budget(self.store.events, self.config.slo, now)
        except StoreError:
            return None
        return ErrorBudget.model_validate(budget.as_json())

    async def status(self) -> PipelineStatus:
        state = self.group.combined_state()
        now = time.time()
        uptime = await self.uptime(now)
        troubled = [
            c for c in state.components.values() if c.status in (Status.DEGRADED, Status.UNHEALTHY)
        ]
        view = self.editor(now)
        history = self.history()
        return PipelineStatus(
            overall_status=state.overall_status(),
            components={name: c.status for name, c in state.components.items()},
            uptime_percentage=uptime["24h"],
            recent_failures=await self._recent_failures(),
            suggested_actions=self._suggestions(troubled, history.available),
            is_auto_recoverable=all(self.engine.is_auto_recoverable(c.name) for c in troubled),
            can_publish=view.can_publish,
            editor_state=view.state,
            stale=view.state == "unknown" and state.overall_status() is not Status.UNKNOWN,
            timestamp=iso(now),
            uptime=uptime,
            slo=await self.error_budget(now),
            component_details={name: self._detail(name, state) for name in state.components},
            monitors=self._monitors(),
            history=history,
        )

    async def _recent_failures(self) -> list[RecentFailure]:
        events: list[dict[str, Any]]
        try:
            events = await self.store.events.recent(10, kinds=("transition",))
        except StoreError:  # from memory: what this monitor saw itself
            transitions = sorted(
                (t for c in self.service.monitor.state.components.values() for t in c.transitions),
                key=lambda t: t.at,
                reverse=True,
            )[:10]
            events = [
                {
                    "component": t.component,
                    "to": t.to_status.value,
                    "error": t.error,
                    "timestamp": t.at,
                }
                for t in transitions
            ]
        return [
            {
                "component": e["component"],
                "status": e["to"],
                "error": e.get("error"),
                "timestamp": iso(e["timestamp"]),
            }
            for e in events
            if e.get("to") in (Status.UNHEALTHY.value, Status.DEGRADED.value)
        ]

    def _monitors(self) -> list[MonitorView]:
        """Each live monitor of the group, and how it sees each component."""
        now = time.time()
        own = MonitorView(
            name=self.service.name,
            this_monitor=True,
            last_seen=iso(now),
            components={n: c.status for n, c in self.service.monitor.state.components.items()},
        )
        snapshot = self.group.snapshot
        others = []
        for other in self.group.others():
            age = max(0.0, (snapshot.at if snapshot else now) - other.last_seen)
            others.append(
                MonitorView(
                    name=other.name,
                    this_monitor=False,
                    last_seen=iso(now - age),
                    components={n: Status(seen.status) for n, seen in other.view.items()},
                )
            )
        return [own, *sorted(others, key=lambda m: m.name)]

    def _detail(self, name: str, state: PipelineState) -> ComponentDetail:
        c = state.components[name]
        own = self.service.monitor.state.components[name]
        manual = self.engine.manual_intervention(name)
        last = self.engine.last_attempt(name)
        return ComponentDetail(
            display_name=c.display_name,
            status=c.status,
            since=iso(c.since),
            latency_ms=round(own.latency_seconds * 1000, 1),
            last_check=iso(c.last_check),
            error=c.error,
            blocks_publishing=c.blocks_publishing,
            active_storage_target=own.active_target,
            storage_targets=list(own.targets),
            repair_in_progress=self.engine.in_progress(name),
            manual_intervention=manual is not None,
            manual_intervention_detail=manual,
            auto_recoverable=self.engine.is_auto_recoverable(name),
            last_attempt=Attempt.from_row(last) if last else None,
            seen_by={m: Status(s) for m, s in self.group.seen_by(name).items()},
            probes={probe: ProbeDetail.of(r) for probe, r in own.probes.items()},
        )

    def _suggestions(self, troubled: list[ComponentState], history_available: bool) -> list[str]:
        lines = []
        if not history_available:
            lines.append(
                "🗄️ The history store is unreachable: the monitors keep probing and serving"
                " this page, keep what they could not write, and run no repair until it"
                f" answers again ({self.store.where})."
            )
        for name in self.config.components:
            views = self.group.seen_by(name)
            healthy = sorted(m for m, s in views.items() if s == Status.HEALTHY.value)
            failing = sorted(
                m for m, s in views.items() if s in (Status.UNHEALTHY.value, Status.DEGRADED.value)
            )
            if healthy and failing:
                lines.append(
                    f"🔀 {name}: {', '.join(failing)} cannot reach it while {', '.join(healthy)}"
                    f" sees it healthy; check the network path from {', '.join(failing)}."
                    " No repair runs while a monitor sees it healthy."
                )
        if not troubled:
            return lines or ["✅ All systems operational. No action needed."]
        for c in troubled:
            steps = "; ".join(self.config.manual_steps(c.name))
            if self.engine.manual_intervention(c.name) is not None:
                lines.append(f"👷 {c.name}: automatic repair gave up; needs an engineer. {steps}")
            elif self.engine.in_progress(c.name):
                lines.append(f"🔧 {c.name}: an automatic repair is running.")
            elif self.engine.is_auto_recoverable(c.name):
                lines.append(
                    f"⏳ {c.name} is {c.status.value}: automatic recovery will be"
                    " attempted when the alert fires."
                )
            else:
                lines.append(
                    f"⚠️ {c.name} is {c.status.value} and not auto-recoverable."
                    f" Manual steps: {steps}"
                )
        return lines

    async def metrics_summary(self) -> MetricsSummary:
        """Check and recovery totals of the group; while the store is unreachable,
        the last totals it gave."""
        try:
            self._last_totals = await self.store.settings.check_totals()
            stats = await self.store.attempts.stats()
        except StoreError:
            stats = {}
        checks = failures = 0
        per_component = {}
        for name in self.config.components:
            done, failed = self._last_totals.get(name, (0, 0))
            per_component[name] = ComponentChecks(checks=done, failures=failed)
            checks += done
            failures += failed
        succeeded = stats.get("success", 0)
        failed_repairs = stats.get("failure", 0) + stats.get("interrupted", 0)
        return MetricsSummary(
            total_checks=checks,
            failed_checks=failures,
            success_rate=round(100.0 * (checks - failures) / checks, 2) if checks else 100.0,
            recovery_stats=RecoveryStats(
                successful_recoveries=succeeded,
                failed_recoveries=failed_repairs,
                success_rate=round(100.0 * succeeded / (succeeded + failed_repairs), 2)
                if succeeded + failed_repairs
                else 100.0,
                interrupted=stats.get("interrupted", 0),
                dry_runs=stats.get("dry_run", 0),
            ),
            components=per_component,
            slo=await self.error_budget(),
        )

    async def history_events(self, limit: int) -> list[HistoryEvent]:
        """The newest events; raises StoreUnavailable while the store is unreachable."""
        # Masked as read: alerts' annotations come from outside and may quote a
        # URL with a token; rows written before masking existed are covered too.
        events: list[dict[str, Any]] = mask_in(await self.store.events.recent(limit))
        return [
            HistoryEvent.model_validate({**event, "timestamp": iso(event["timestamp"])})
            for event in events
        ]
