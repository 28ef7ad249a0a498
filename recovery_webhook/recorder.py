"""The group's own history of the pipeline, written by one monitor at a time.

Uptime, incidents and check counts come from this history, so they must be
counted once however many monitors run. The monitor holding the ``recorder``
lease writes the combined view's transitions and publishing changes, its check
totals, and the end of any monitor that died without saying so. Each transition
carries a key made of the component, its new state and when that state began,
so that one written twice (around a store outage, or by two monitors in the
moment a recorder changes) is kept once.

While the store is unreachable, the monitor that was recording keeps recording
its own view, into the writes that wait for the store.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from exporter.model import Status
from exporter.state import PipelineState
from recovery_webhook.group import Group, Snapshot
from recovery_webhook.leases import Leases
from recovery_webhook.store import Lease, Store, StoreError

log = logging.getLogger(__name__)

LEASE = "recorder"
_LIFECYCLE = ("monitor_started", "monitor_stopped")


class Recorder:
    def __init__(self, store: Store, state: PipelineState, group: Group, leases: Leases) -> None:
        self.store = store
        self.state = state
        self.group = group
        self.leases = leases
        self.lease: Lease | None = None
        self._recorded: dict[str, tuple[str, float]] = {}
        self._can_publish: bool | None = None
        self._counted: dict[str, tuple[int, int]] = {}
        self._checks: dict[str, tuple[int, int]] = {c: (0, 0) for c in state.components}
        self._counted_runs: dict[str, tuple[int, int]] = {}

    @property
    def recording(self) -> bool:
        return self.lease is not None

    async def refresh(self, snapshot: Snapshot) -> None:
        """After each refresh of the group: hold the role if free, then record."""
        if self.lease is not None:
            renewed = await self.store.leases.renew(self.lease, self.leases.ttl)
            if renewed is None:
                log.info("another monitor records the group's history now")
            self.lease = renewed
        if self.lease is None:
            previous = snapshot.leases.get(LEASE)
            self.lease = await self.store.leases.acquire(
                LEASE, self.group.incarnation, self.group.name, self.leases.ttl
            )
            if self.lease is None:
                return
            await self._take_over(snapshot, previous.holder if previous else None)
        await self._record_gone(snapshot)
        self.record_changes()
        await self._write_totals()

    async def stop(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            try:
                await self.store.leases.release(lease)
            except StoreError as exc:
                log.warning("cannot hand the group's history over: %s", exc)

    def lifecycle_data(self, **data: Any) -> dict[str, Any]:
        """Data of this monitor's start or stop event: ``recorder`` says whether
        uptime takes it into account (only the recorder's count)."""
        return {**data, "monitor": self.group.name, "recorder": self.recording}

    async def _take_over(self, snapshot: Snapshot, previous: str | None) -> None:
        self._recorded = {}
        for event in await self.store.events.recent(
            len(self.state.components) * 4 + 10, kinds=("transition",)
        ):
            if event["component"] not in self._recorded:
                self._recorded[event["component"]] = (event["to"], event["timestamp"])
        # A start or stop makes uptime "unknown" until the next publishing event:
        # the first round of a new recorder writes one.
        self._can_publish = None
        self._counted_runs = {
            name: (c.runs, c.failures) for name, c in self.state.components.items()
        }
        if previous not in (None, self.group.incarnation):
            log.info("this monitor records the group's history now")

    async def _record_gone(self, snapshot: Snapshot) -> None:
        """The end of monitors that died without a word, at their last beat."""
        holder = snapshot.leases.get(LEASE)
        for gone in snapshot.gone:
            recorder = holder is None or holder.holder == gone.incarnation
            self.store.events.add(
                [
                    (
                        gone.last_seen,
                        "monitor_stopped",
                        None,
                        {"clean": False, "monitor": gone.name, "recorder": recorder},
                    )
                ],
                gone.name,
                [f"stopped:{gone.incarnation}"],
            )
            await self.store.monitors.mark_stopped(gone.incarnation)

    def record_changes(self) -> None:
        """The combined view's changes since the last call, as history events
        (while this monitor records; while the store is unreachable, too, with its
        own view: they wait for the store with the other writes)."""
        if self.lease is None:
            return
        now = time.time()
        events: list[tuple[float, str, str | None, dict[str, Any]]] = []
        keys: list[str | None] = []
        statuses: dict[str, Status] = {}
        for name in self.state.components:
            combined = self.group.combined(name)
            statuses[name] = combined.status
            if combined.status is Status.UNKNOWN:
                continue
            previous = self._recorded.get(name)
            if previous is not None and previous[0] == combined.status.value:
                continue
            events.append(
                (
                    combined.since,
                    "transition",
                    name,
                    {
                        "from": previous[0] if previous else Status.UNKNOWN.value,
                        "to": combined.status.value,
                        "error": combined.error,
                        "seen_by": combined.seen_by,
                    },
                )
            )
            keys.append(f"transition:{name}:{combined.status.value}:{combined.since:.3f}")
            self._recorded[name] = (combined.status.value, combined.since)
        if all(s is not Status.UNKNOWN for s in statuses.values()):
            can_publish = not any(
                c.blocks_publishing and statuses[n] is Status.UNHEALTHY
                for n, c in self.state.components.items()
            )
            if can_publish != self._can_publish:
                self._can_publish = can_publish
                at = max((e[0] for e in events), default=now)
                events.append((at, "publishing", None, {"can_publish": can_publish}))
                keys.append(None)
        if events:
            self.store.events.add(events, self.group.name, keys)

    async def _write_totals(self) -> None:
        """Checks since this monitor began recording; a failure counts when the
        group agrees that the component is unhealthy."""
        for name, component in self.state.components.items():
            runs, failures = self._counted_runs.get(name, (component.runs, component.failures))
            new_runs, new_failures = component.runs - runs, component.failures - failures
            agreed = self.group.combined(name).status is Status.UNHEALTHY
            checks, failed = self._checks[name]
            self._checks[name] = (checks + new_runs, failed + (new_failures if agreed else 0))
            self._counted_runs[name] = (component.runs, component.failures)
        if self._checks != self._counted:
            totals = dict(self._checks)
            await self.store.settings.put_check_totals(self.group.incarnation, totals)
            self._counted = totals
