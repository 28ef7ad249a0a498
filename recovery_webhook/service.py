"""The product's core, shared by the HTTP service and the seed's Python API:
the monitor, the history, the recovery engine, and the answers they give."""

from __future__ import annotations

import asyncio
import contextlib
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
from exporter.state import PipelineState, Transition
from recovery_webhook.actions.reaper import GRACE as REAPER_GRACE
from recovery_webhook.actions.reaper import Reaper
from recovery_webhook.config import AppConfig
from recovery_webhook.editor import EditorView, editor_view, incident_view, iso
from recovery_webhook.engine import RecoveryEngine
from recovery_webhook.group import Group
from recovery_webhook.incidents import EVENT_KINDS as INCIDENT_EVENT_KINDS
from recovery_webhook.incidents import derive_incidents
from recovery_webhook.leases import Leases
from recovery_webhook.recorder import Recorder
from recovery_webhook.store import AttemptRow, StoreError, make_store

log = logging.getLogger(__name__)

UPTIME_WINDOWS = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
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
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "monitor.lock", os.O_RDWR | os.O_CREAT, 0o600)
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
        self.name = config.instance_name()
        self.store = make_store(config.history_url, config.history_path, self.name)
        ttl = config.recovery.lease_ttl
        interval = config.check_interval
        # Beats often enough to renew the group's leases (a third of their life)
        # and to see another monitor's view within a check or two.
        beat = max(0.5, min(interval, ttl / 4, 5.0))
        self.group = Group(self.store, self.monitor.state, self.name, beat, 3 * beat + interval)
        self.leases = Leases(self.store.leases, self.group.incarnation, self.name, ttl)
        self.reaper = Reaper(grace=min(REAPER_GRACE, ttl / 4))
        self.engine = RecoveryEngine(
            config, self.monitor, self.store, self.audit, self.group, self.leases, self.reaper
        )
        self.recorder = Recorder(self.store, self.monitor.state, self.group, self.leases)
        self.started_at = time.time()
        self._last_uptime: dict[str, float | None] = {label: None for label in UPTIME_WINDOWS}
        self._last_totals: dict[str, tuple[int, int]] = {}
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start every part; if one fails, what started before it stops again."""
        async with contextlib.AsyncExitStack() as stack:
            lock = lock_state_dir(self.config.state_dir)
            stack.callback(os.close, lock)
            # A group's store may be the very database that is down: start
            # anyway, and catch up once it answers.
            await self.store.open(wait=self.config.history_url is None)
            stack.push_async_callback(self.store.close)
            self.store.events.add(
                [
                    (
                        time.time(),
                        "monitor_started",
                        None,
                        self.recorder.lifecycle_data(version=__version__),
                    )
                ],
                self.name,
            )
            await self.reaper.start()
            stack.push_async_callback(self.reaper.stop)
            self.group.on_refresh(self.recorder.refresh)
            # Also while the store is unreachable: what the group sees may change
            # as the others' views age out.
            self.group.on_beat(self.recorder.record_changes)
            await self.engine.start()
            stack.push_async_callback(self.engine.stop)
            self.monitor.state.add_listener(self._on_transition)
            # One round before the first probes: this monitor may take the
            # recorder's role at once, and record its first view as it comes.
            with contextlib.suppress(StoreError):
                await self.group.refresh()
            stack.push_async_callback(self.group.stop)
            stack.push_async_callback(self.recorder.stop)
            await self.monitor.start()
            stack.push_async_callback(self.monitor.stop)
            # Repairs end before the probes they verify with (stop() is idempotent).
            stack.push_async_callback(self.engine.stop)
            stack.push_async_callback(self._say_goodbye)
            self.group.start()
            housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
            stack.push_async_callback(_cancelled, housekeeping)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        await self._stack.aclose()
        if self._owns_audit:
            self.audit.close()

    async def _say_goodbye(self) -> None:
        """Before the recorder's lease goes: the clean end of this monitor."""
        self.store.events.add(
            [(time.time(), "monitor_stopped", None, self.recorder.lifecycle_data(clean=True))],
            self.name,
        )

    async def _housekeep(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            if time.time() - last_prune < 3600 or not self.recorder.recording:
                continue
            try:
                removed = await self.store.prune(time.time() - self.config.history.retention)
                last_prune = time.time()
                if removed:
                    log.info("history: removed %d entries past retention", removed)
            except StoreError as exc:  # housekeeping must outlive one bad round
                log.warning("history housekeeping failed: %s", exc)

    def _on_transition(self, transition: Transition) -> None:
        # Recorded at once (the others' views are those of the last refresh),
        # and the group hears of it at the next beat, which comes soon.
        self.recorder.record_changes()
        self.group.refresh_soon()

    # -- answers -----------------------------------------------------------------

    async def force_check(self) -> None:
        await self.monitor.scheduler.run_cycle()
        self.group.refresh_soon()

    async def attempt_recovery(self, component: str) -> AttemptRow:
        return await self.engine.recover_now(component)

    def history_availability(self) -> dict[str, Any]:
        availability = self.store.availability().as_json()
        availability["since"] = iso(availability["since"])
        return availability

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

    async def incidents(self, now: float | None = None, limit: int = 10) -> list[dict[str, Any]]:
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
        """Uptime over each window; while the store is unreachable, the last figures."""
        now = time.time() if now is None else now
        try:
            self._last_uptime = {
                label: await self._uptime(window, now) for label, window in UPTIME_WINDOWS.items()
            }
        except StoreError:
            pass
        return dict(self._last_uptime)

    async def _uptime(self, window: float, now: float) -> float | None:
        """Share of the observed time in ``window`` when articles could be published."""
        start = now - window
        known, up = False, False
        cursor, observed, published = start, 0.0, 0.0
        for ts, kind, data in await self.store.events.transitions_since(start):
            if kind != "publishing" and data.get("recorder") is False:
                continue  # a monitor that did not record for the group came or went
            ts = max(ts, start)
            if known:
                observed += ts - cursor
                published += (ts - cursor) if up else 0.0
            cursor = ts
            if kind == "publishing":
                known, up = True, bool(data.get("can_publish"))
            else:  # the recorder started or stopped: unknown until it has checked again
                known = False
        if known:
            observed += now - cursor
            published += (now - cursor) if up else 0.0
        if observed <= 0:
            return None
        return round(100.0 * published / observed, 3)

    async def _recent_failures(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]]
        try:
            events = await self.store.events.recent(10, kinds=("transition",))
        except StoreError:  # from memory: what this monitor saw itself
            transitions = sorted(
                (t for c in self.monitor.state.components.values() for t in c.transitions),
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

    async def status(self) -> dict[str, Any]:
        state = self.group.combined_state()
        now = time.time()
        uptime = await self.uptime(now)
        troubled = [
            c for c in state.components.values() if c.status in (Status.DEGRADED, Status.UNHEALTHY)
        ]
        view = self.editor(now)
        history = self.history_availability()
        return {
            "overall_status": state.overall_status().value,
            "components": {name: c.status.value for name, c in state.components.items()},
            "uptime_percentage": uptime["24h"],
            "recent_failures": await self._recent_failures(),
            "suggested_actions": self._suggestions(troubled, history["available"]),
            "is_auto_recoverable": all(self.engine.is_auto_recoverable(c.name) for c in troubled),
            "can_publish": view.can_publish,
            "editor_state": view.state,
            "stale": view.state == "unknown" and state.overall_status() is not Status.UNKNOWN,
            "timestamp": iso(now),
            "uptime": uptime,
            "component_details": {name: self._detail(name, state) for name in state.components},
            "monitors": self._monitors(),
            "history": history,
        }

    def _monitors(self) -> list[dict[str, Any]]:
        """Each live monitor of the group, and how it sees each component."""
        own = {
            "name": self.name,
            "this_monitor": True,
            "last_seen": iso(time.time()),
            "components": {n: c.status.value for n, c in self.monitor.state.components.items()},
        }
        snapshot = self.group.snapshot
        others = []
        for other in self.group.others():
            age = (snapshot.at if snapshot else time.time()) - other.last_seen
            others.append(
                {
                    "name": other.name,
                    "this_monitor": False,
                    "last_seen": iso(time.time() - max(0.0, age)),
                    "components": {n: seen.status for n, seen in other.view.items()},
                }
            )
        return [own, *sorted(others, key=lambda m: str(m["name"]))]

    def _detail(self, name: str, state: PipelineState) -> dict[str, Any]:
        c = state.components[name]
        own = self.monitor.state.components[name]
        manual = self.engine.manual_intervention(name)
        last = self.engine.last_attempt(name)
        return {
            "display_name": c.display_name,
            "status": c.status.value,
            "since": iso(c.since),
            "latency_ms": round(own.latency_seconds * 1000, 1),
            "last_check": iso(c.last_check),
            "error": c.error,
            "blocks_publishing": c.blocks_publishing,
            "active_storage_target": own.active_target,
            "storage_targets": list(own.targets),
            "repair_in_progress": self.engine.in_progress(name),
            "manual_intervention": manual is not None,
            "manual_intervention_detail": manual,
            "auto_recoverable": self.engine.is_auto_recoverable(name),
            "last_attempt": last.as_json() if last else None,
            "seen_by": self.group.seen_by(name),
            "probes": {
                probe: {
                    "status": r.status.value,
                    "latency_ms": round(r.latency_seconds * 1000, 1),
                    "error": r.error,
                    "detail": r.detail,
                }
                for probe, r in own.probes.items()
            },
        }

    def _suggestions(self, troubled: list[Any], history_available: bool) -> list[str]:
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

    async def metrics_summary(self) -> dict[str, Any]:
        try:
            self._last_totals = await self.store.settings.check_totals()
            stats = await self.store.attempts.stats()
        except StoreError:
            stats = {}
        checks = failures = 0
        per_component = {}
        for name in self.config.components:
            done, failed = self._last_totals.get(name, (0, 0))
            per_component[name] = {"checks": done, "failures": failed}
            checks += done
            failures += failed
        succeeded = stats.get("success", 0)
        failed_repairs = stats.get("failure", 0) + stats.get("interrupted", 0)
        return {
            "total_checks": checks,
            "failed_checks": failures,
            "success_rate": round(100.0 * (checks - failures) / checks, 2) if checks else 100.0,
            "recovery_stats": {
                "successful_recoveries": succeeded,
                "failed_recoveries": failed_repairs,
                "success_rate": round(100.0 * succeeded / (succeeded + failed_repairs), 2)
                if succeeded + failed_repairs
                else 100.0,
                "interrupted": stats.get("interrupted", 0),
                "dry_runs": stats.get("dry_run", 0),
            },
            "components": per_component,
        }

    async def history_events(self, limit: int) -> list[dict[str, Any]]:
        events = await self.store.events.recent(limit)
        for event in events:
            event["timestamp"] = iso(event["timestamp"])
        return events


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
