"""The monitors of a group, as this one sees them through the store.

Every ``beat`` seconds (and soon after any of its components changes state) a
monitor writes its view of every component and reads back everyone else's,
with the group's leases and decisions: a :class:`Snapshot`. The API, the page
and the repairs read the latest snapshot, so every monitor gives the same
answers within a beat.

A monitor is live while its last beat is recent (``liveness`` seconds, in the
store's clock). The combined view takes, for each component, the best status a
live monitor sees: one monitor whose own path to a part broke does not make the
part down for the newsroom, and no repair runs while any live monitor sees the
part healthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.model import Status
from exporter.state import PipelineState
from recovery_webhook.store import (
    AttemptRow,
    ComponentSeen,
    LeaseInfo,
    MonitorRow,
    Store,
    StoreError,
)

log = logging.getLogger(__name__)

_RANK = {Status.HEALTHY: 3, Status.DEGRADED: 2, Status.UNHEALTHY: 1, Status.UNKNOWN: 0}


@dataclass(frozen=True)
class Snapshot:
    """What the store said at the last refresh."""

    at: float
    """The store's clock then."""
    monitors: list[MonitorRow] = field(default_factory=list)
    """Live monitors, this one included."""
    gone: list[MonitorRow] = field(default_factory=list)
    """Monitors whose last beat is too old and that never said they stopped."""
    leases: dict[str, LeaseInfo] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    last_attempts: dict[str, AttemptRow] = field(default_factory=dict)
    first_alerts: dict[str, float] = field(default_factory=dict)
    """Per component, when the first alert still firing arrived (any monitor's)."""


@dataclass(frozen=True)
class Combined:
    """One component as the group sees it."""

    status: Status
    since: float
    error: str | None
    seen_by: list[str]


def own_view(state: PipelineState) -> dict[str, ComponentSeen]:
    return {
        name: ComponentSeen(c.status.value, c.last_check, c.since, c.error)
        for name, c in state.components.items()
    }


class Group:
    def __init__(
        self,
        store: Store,
        state: PipelineState,
        name: str,
        beat: float,
        liveness: float,
    ) -> None:
        self.store = store
        self.state = state
        self.name = name
        #: This run of this monitor: a restarted monitor is a new member.
        self.incarnation = f"{name}/{uuid.uuid4().hex[:12]}"
        self.started_at = time.time()
        self.beat = beat
        self.liveness = liveness
        self.snapshot: Snapshot | None = None
        self._listeners: list[Callable[[Snapshot], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()
        self._refreshed = asyncio.Event()
        self._refreshed_at = 0.0
        self._beats: list[Callable[[], None]] = []

    def on_refresh(self, listener: Callable[[Snapshot], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    def on_beat(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every beat, whether or not the store answered."""
        self._beats.append(listener)

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name="group")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.store.monitors.beat(
                self.incarnation, self.name, self.started_at, own_view(self.state), stopped=True
            )
        except StoreError as exc:
            log.warning("cannot tell the group this monitor stops: %s", exc)

    def refresh_soon(self) -> None:
        """Beat and refresh now rather than at the next beat (a state changed)."""
        self._soon.set()

    async def refreshed(self, timeout: float) -> bool:
        """Wait for the next refresh; False if none came within ``timeout``."""
        self._refreshed.clear()
        waiter = asyncio.ensure_future(self._refreshed.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()
        return bool(done)

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except StoreError:
                pass  # the store says so itself; the view is what this monitor sees
            except Exception:  # the group loop must outlive one bad round
                log.exception("refreshing the group's view failed")
            for beat in self._beats:
                try:
                    beat()
                except Exception:
                    log.exception("a group listener failed")
            # asyncio.wait, not wait_for: before Python 3.12, wait_for swallows a
            # cancellation that comes as the event is set, and stop() would hang.
            soon = asyncio.ensure_future(self._soon.wait())
            try:
                await asyncio.wait({soon}, timeout=self.beat)
            finally:
                soon.cancel()
            if self._soon.is_set():
                await asyncio.sleep(0.02)  # the rest of a cycle's changes come along
            self._soon.clear()

    async def refresh(self) -> Snapshot:
        store = self.store
        await store.monitors.beat(
            self.incarnation, self.name, self.started_at, own_view(self.state)
        )
        now, rows = await store.monitors.all()
        live = [m for m in rows if not m.stopped and now - m.last_seen <= self.liveness]
        gone = [m for m in rows if not m.stopped and now - m.last_seen > self.liveness]
        leases = {lease.name: lease for lease in await store.leases.all()}
        settings = {
            **{f"manual:{k}": v for k, v in (await store.settings.with_prefix("manual:")).items()},
            **{f"target:{k}": v for k, v in (await store.settings.with_prefix("target:")).items()},
        }
        attempts = await store.attempts.last_per_component()
        alerted = await store.alerts.first_firing(time.time() - 86400.0)
        snapshot = Snapshot(now, live, gone, leases, settings, attempts, alerted)
        self.snapshot = snapshot
        self._refreshed_at = time.monotonic()
        for listener in self._listeners:
            try:
                await listener(snapshot)
            except StoreError:
                raise
            except Exception:  # one listener's bug must not cost the others
                log.exception("a group listener failed")
        self._refreshed.set()
        return snapshot

    # -- what the group sees -------------------------------------------------------------

    def others(self) -> list[MonitorRow]:
        """The other live monitors (none while the store is unreachable, or when
        the last refresh is too old to say)."""
        if self.snapshot is None or not self.store.available:
            return []
        if time.monotonic() - self._refreshed_at > self.liveness:
            return []
        return [m for m in self.snapshot.monitors if m.incarnation != self.incarnation]

    def combined(self, component: str) -> Combined:
        """The best status a live monitor sees, since when, and who sees it so."""
        own = self.state.components[component]
        views = [(self.name, ComponentSeen(own.status.value, own.last_check, own.since, own.error))]
        views += [(o.name, o.view[component]) for o in self.others() if component in o.view]
        best = max((Status(seen.status) for _, seen in views), key=_RANK.__getitem__)
        agreeing = [(name, seen) for name, seen in views if seen.status == best.value]
        # Healthy from the first monitor that saw it so; anything else from when
        # the last one stopped seeing it better.
        times = [seen.since for _, seen in agreeing]
        since = min(times) if best is Status.HEALTHY else max(times)
        error = next((seen.error for _, seen in agreeing if seen.error), None)
        return Combined(best, since, error, [name for name, _ in agreeing])

    def combined_state(self) -> PipelineState:
        """The pipeline as the group sees it (a copy; this monitor's own details,
        with each component's status from the combined view)."""
        components = []
        for name, own in self.state.components.items():
            combined = self.combined(name)
            if combined.status is own.status:
                components.append(own)
                continue
            seen = [o.view[name] for o in self.others() if name in o.view]
            checked = max((s.checked_at or 0.0 for s in seen), default=0.0) or own.last_check
            components.append(
                replace(
                    own,
                    status=combined.status,
                    since=combined.since,
                    error=combined.error,
                    last_check=checked,
                )
            )
        return PipelineState(components)

    def seen_by(self, component: str) -> dict[str, str]:
        """Each live monitor's view of ``component``."""
        views = {self.name: self.state.components[component].status.value}
        for other in self.others():
            seen = other.view.get(component)
            if seen is not None:
                views[other.name] = seen.status
        return views

    async def healthy_elsewhere(self, component: str, since: float, wait: float) -> str | None:
        """The name of a live monitor that has seen ``component`` healthy since
        ``since`` (when this one found it failing), or None.

        A monitor whose last view is older than ``since`` has not looked since:
        its next beat is waited for, up to ``wait`` seconds; one that does not
        beat by then is not counted."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            stale = False
            for other in self.others():
                seen = other.view.get(component)
                if seen is None or seen.checked_at is None:
                    continue
                if seen.checked_at < since:
                    stale = True
                elif seen.status == Status.HEALTHY.value:
                    return other.name
            remaining = deadline - asyncio.get_running_loop().time()
            if not stale or remaining <= 0:
                return None
            self.refresh_soon()
            await self.refreshed(min(remaining, self.beat))
