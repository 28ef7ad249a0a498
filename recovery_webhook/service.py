"""The product's core, shared by the HTTP service and the seed's Python API:
the monitor, the history, the recovery engine, and the answers they give."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.audit import AuditLog
from exporter.model import Status
from exporter.monitor import Monitor
from exporter.private_files import open_private, private_directory
from exporter.redact import mask_in
from exporter.state import Transition
from recovery_webhook.config import AppConfig
from recovery_webhook.editor import EditorView, editor_view, incident_view, iso
from recovery_webhook.engine import RecoveryEngine
from recovery_webhook.history import AttemptRow, History
from recovery_webhook.incidents import EVENT_KINDS as INCIDENT_EVENT_KINDS
from recovery_webhook.incidents import derive_incidents

log = logging.getLogger(__name__)

UPTIME_WINDOWS = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
_HEARTBEAT = "heartbeat"
_HOUSEKEEPING_SECONDS = 15.0
# The newest incident-related events read to derive the recent incidents.
_INCIDENT_EVENTS_READ = 500


class StateDirInUse(RuntimeError):
    """Another monitor holds the state directory (history, heartbeat, token)."""


def lock_state_dir(state_dir: Path) -> int:
    """Hold ``state_dir/monitor.lock`` for this process; return the descriptor.

    Two monitors on one state directory would write each other's heartbeats and
    stop events into one history and make its uptime figures wrong.
    """
    private_directory(state_dir)
    fd = open_private(state_dir / "monitor.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StateDirInUse(
            f"{state_dir} is in use by another pipeline-monitor (pid {holder});"
            " give each monitor its own PIPELINE_STATE_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class PipelineService:
    def __init__(self, config: AppConfig, audit: AuditLog | None = None) -> None:
        self.config = config
        self.audit = audit if audit is not None else AuditLog(config.audit)
        self._owns_audit = audit is None
        self.monitor = Monitor(config, audit=self.audit)
        self.history = History(config.history_path, config.history.retention)
        self.engine = RecoveryEngine(config, self.monitor, self.history, self.audit)
        self.started_at = time.time()
        self._can_publish: bool | None = None
        self._counted = {name: (0, 0) for name in config.components}
        self._base_counts: dict[str, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._housekeeping: asyncio.Task[None] | None = None
        self._lock: int | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._lock = lock_state_dir(self.config.state_dir)
        try:
            await self.history.open()
        except BaseException:
            os.close(self._lock)
            raise
        heartbeat = await self.history.get_setting(_HEARTBEAT)
        if heartbeat:
            # The last run ended without a goodbye (killed): what happened after
            # its last heartbeat is unknown, not "up".
            await self.history.add_event("monitor_stopped", None, {"clean": False}, ts=heartbeat)
        await self.history.add_event("monitor_started", None, {"version": __version__})
        # A first beat now: a run killed before housekeeping's first tick must
        # still be seen as ended uncleanly at the next start.
        await self.history.set_setting(_HEARTBEAT, time.time())
        self._base_counts = await self.history.check_counts()
        self.monitor.state.add_listener(self._on_transition)
        await self.engine.start()
        await self.monitor.start()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        await self.engine.stop()
        await self.monitor.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush_counts()
        await self.history.add_event("monitor_stopped", None, {"clean": True})
        await self.history.set_setting(_HEARTBEAT, None)
        await self.history.close()
        if self._owns_audit:
            self.audit.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def _housekeep(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(min(_HOUSEKEEPING_SECONDS, self.config.check_interval))
            try:
                await self._flush_counts()
                await self.history.set_setting(_HEARTBEAT, time.time())
                if time.time() - last_prune > 3600:
                    removed = await self.history.prune()
                    last_prune = time.time()
                    if removed:
                        log.info("history: removed %d entries past retention", removed)
            except Exception:  # housekeeping must outlive one bad write
                log.exception("history housekeeping failed")

    async def _flush_counts(self) -> None:
        now = {name: (c.runs, c.failures) for name, c in self.monitor.state.components.items()}
        deltas = {
            name: (runs - self._counted[name][0], failures - self._counted[name][1])
            for name, (runs, failures) in now.items()
        }
        await self.history.add_check_counts(deltas)
        self._counted.update(now)  # only once written: a failed write is retried next time

    def _on_transition(self, transition: Transition) -> None:
        events: list[tuple[float, str, str | None, dict[str, Any]]] = [
            (
                transition.at,
                "transition",
                transition.component,
                {
                    "from": transition.from_status.value,
                    "to": transition.to_status.value,
                    "error": transition.error,
                },
            )
        ]
        state = self.monitor.state
        if all(c.status is not Status.UNKNOWN for c in state.components.values()):
            can_publish = state.can_publish()
            if can_publish != self._can_publish:
                self._can_publish = can_publish
                events.append((transition.at, "publishing", None, {"can_publish": can_publish}))
        task = asyncio.get_running_loop().create_task(self.history.add_events(events))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answers -----------------------------------------------------------------

    async def force_check(self) -> None:
        await self.monitor.scheduler.run_cycle()

    async def attempt_recovery(self, component: str) -> AttemptRow:
        return await self.engine.recover_now(component)

    def editor(self, now: float | None = None) -> EditorView:
        now = time.time() if now is None else now
        return editor_view(
            self.monitor.state,
            now=now,
            max_age=3 * self.config.check_interval + 5,
            tz=self.config.status_page.timezone,
            repairing=self.engine.in_progress,
            manual=lambda c: self.engine.manual_intervention(c) is not None,
            notified_at=self._notified_at,
            contact=self.config.status_page.newsroom_contact,
        )

    def _notified_at(self, component: str) -> float | None:
        return self.engine.first_alert_since(
            component, self.monitor.state.components[component].since
        )

    async def incidents(self, now: float | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The recent incidents from history, newest first, in editors' words."""
        now = time.time() if now is None else now
        events = await self.history.events(_INCIDENT_EVENTS_READ, kinds=INCIDENT_EVENT_KINDS)
        views = []
        for incident in derive_incidents(events, limit):
            name = incident.component
            known = name in self.config.components
            state = self.monitor.state.components.get(name)
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

    async def uptime(self, now: float | None = None) -> dict[str, float | None]:
        now = time.time() if now is None else now
        return {label: await self._uptime(window, now) for label, window in UPTIME_WINDOWS.items()}

    async def _uptime(self, window: float, now: float) -> float | None:
        """Share of the observed time in ``window`` when articles could be published."""
        start = now - window
        known, up = False, False
        cursor, observed, published = start, 0.0, 0.0
        for ts, kind, data in await self.history.transitions_since(start):
            ts = max(ts, start)
            if known:
                observed += ts - cursor
                published += (ts - cursor) if up else 0.0
            cursor = ts
            if kind == "publishing":
                known, up = True, bool(data.get("can_publish"))
            else:  # the monitor started or stopped: unknown until it has checked again
                known = False
        if known:
            observed += now - cursor
            published += (now - cursor) if up else 0.0
        if observed <= 0:
            return None
        return round(100.0 * published / observed, 3)

    async def status(self) -> dict[str, Any]:
        state = self.monitor.state
        now = time.time()
        uptime = await self.uptime(now)
        failures = await self.history.events(10, kinds=("transition",))
        recent_failures = [
            {
                "component": e["component"],
                "status": e["to"],
                "error": e.get("error"),
                "timestamp": iso(e["timestamp"]),
            }
            for e in failures
            if e.get("to") in (Status.UNHEALTHY.value, Status.DEGRADED.value)
        ]
        troubled = [
            c for c in state.components.values() if c.status in (Status.DEGRADED, Status.UNHEALTHY)
        ]
        view = self.editor(now)
        return {
            "overall_status": state.overall_status().value,
            "components": {name: c.status.value for name, c in state.components.items()},
            "uptime_percentage": uptime["24h"],
            "recent_failures": recent_failures,
            "suggested_actions": self._suggestions(troubled),
            "is_auto_recoverable": all(self.engine.is_auto_recoverable(c.name) for c in troubled),
            "can_publish": view.can_publish,
            "editor_state": view.state,
            "stale": view.state == "unknown" and state.overall_status() is not Status.UNKNOWN,
            "timestamp": iso(now),
            "uptime": uptime,
            "component_details": {name: self._detail(name) for name in state.components},
        }

    def _detail(self, name: str) -> dict[str, Any]:
        c = self.monitor.state.components[name]
        manual = self.engine.manual_intervention(name)
        last = self.engine.last_attempt(name)
        return {
            "display_name": c.display_name,
            "status": c.status.value,
            "since": iso(c.since),
            "latency_ms": round(c.latency_seconds * 1000, 1),
            "last_check": iso(c.last_check),
            "error": c.error,
            "blocks_publishing": c.blocks_publishing,
            "active_storage_target": c.active_target,
            "storage_targets": list(c.targets),
            "repair_in_progress": self.engine.in_progress(name),
            "manual_intervention": manual is not None,
            "manual_intervention_detail": manual,
            "auto_recoverable": self.engine.is_auto_recoverable(name),
            "last_attempt": last.as_json() if last else None,
            "probes": {
                probe: {
                    "status": r.status.value,
                    "latency_ms": round(r.latency_seconds * 1000, 1),
                    "error": r.error,
                    "detail": r.detail,
                }
                for probe, r in c.probes.items()
            },
        }

    def _suggestions(self, troubled: list[Any]) -> list[str]:
        if not troubled:
            return ["✅ All systems operational. No action needed."]
        lines = []
        for c in troubled:
            steps = "; ".join(self.config.manual_steps(c.name))
            if self.engine.in_progress(c.name):
                lines.append(f"🔧 {c.name}: an automatic repair is running.")
            elif self.engine.manual_intervention(c.name) is not None:
                lines.append(f"👷 {c.name}: automatic repair gave up; needs an engineer. {steps}")
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

    async def metrics_summary(self) -> dict[str, Any]:
        checks = failures = 0
        per_component = {}
        for name, c in self.monitor.state.components.items():
            base_checks, base_failures = self._base_counts.get(name, (0, 0))
            per_component[name] = {
                "checks": base_checks + c.runs,
                "failures": base_failures + c.failures,
            }
            checks += base_checks + c.runs
            failures += base_failures + c.failures
        stats = await self.history.attempt_stats()
        succeeded = stats.get("success", 0)
        failed = stats.get("failure", 0) + stats.get("interrupted", 0)
        return {
            "total_checks": checks,
            "failed_checks": failures,
            "success_rate": round(100.0 * (checks - failures) / checks, 2) if checks else 100.0,
            "recovery_stats": {
                "successful_recoveries": succeeded,
                "failed_recoveries": failed,
                "success_rate": round(100.0 * succeeded / (succeeded + failed), 2)
                if succeeded + failed
                else 100.0,
                "interrupted": stats.get("interrupted", 0),
                "dry_runs": stats.get("dry_run", 0),
            },
            "components": per_component,
        }

    async def history_events(self, limit: int) -> list[dict[str, Any]]:
        # Masked as read: alerts' annotations come from outside and may quote a
        # URL with a token; rows written before masking existed are covered too.
        events: list[dict[str, Any]] = mask_in(await self.history.events(limit))
        for event in events:
            event["timestamp"] = iso(event["timestamp"])
        return events
