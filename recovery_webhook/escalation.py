"""Handing a component to people, and back to automation.

A component is escalated once per hand-over: the group's store holds the
hand-over (``manual:<component>``), so however many monitors decide the same,
one escalation is recorded and paged. It ends when the component is healthy
again, or when a repair asked for by a person succeeds.

When the store cannot be reached no repair may run (no lease can be taken), so
a component that needs one is handed to people by this monitor alone, until the
store answers again and automation can go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from exporter.audit import AuditLog
from recovery_webhook.config import AppConfig
from recovery_webhook.metrics import RecoveryMetrics
from recovery_webhook.store import Lease, Store, StoreError

log = logging.getLogger(__name__)

PREFIX = "manual:"
STORE_DOWN = "the history store is unreachable, and no repair runs without its lease"


class Handover:
    def __init__(
        self,
        config: AppConfig,
        store: Store,
        audit: AuditLog,
        metrics: RecoveryMetrics,
        monitor: str,
    ) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.metrics = metrics
        self.monitor = monitor
        self._manual: dict[str, dict[str, Any]] = {}
        # Handed over by this monitor while the store was unreachable.
        self._offline: dict[str, dict[str, Any]] = {}

    def info(self, component: str) -> dict[str, Any] | None:
        return self._manual.get(component) or self._offline.get(component)

    def is_manual(self, component: str) -> bool:
        return component in self._manual

    def follow(self, manual: Mapping[str, Any]) -> None:
        """Take the group's hand-overs from the store (its ``manual:`` settings)."""
        known = {c: info for c, info in manual.items() if c in self.config.components and info}
        for component in set(self._manual) | set(known):
            self.metrics.manual_intervention.labels(component).set(
                1 if component in known or component in self._offline else 0
            )
        self._manual = known

    async def escalate(
        self,
        component: str,
        reason: str,
        lease: Lease | None,
        alertname: str | None = None,
        attempt_id: str | None = None,
    ) -> bool:
        """Hand ``component`` to people; True if this call did (it was not yet)."""
        if component in self._manual:
            return False  # already with people: one escalation per hand-over
        info: dict[str, Any] = {
            "since": time.time(),
            "reason": reason,
            "alertname": alertname,
            "attempt_id": attempt_id,
            "manual_steps": self.config.manual_steps(component),
            "monitor": self.monitor,
        }
        changed = await self.store.settings.put(
            f"{PREFIX}{component}",
            info,
            lease=lease,
            events=[(info["since"], "escalation", component, info)],
            monitor=self.monitor,
        )
        self._manual[component] = info
        self.metrics.manual_intervention.labels(component).set(1)
        if changed:
            self.metrics.escalations.labels(component).inc()
            self.audit.escalation(component, info)
        return changed

    def escalate_offline(self, component: str, alertname: str | None) -> None:
        """The store is unreachable: people take over here until it is back."""
        if component in self._manual or component in self._offline:
            return
        info: dict[str, Any] = {
            "since": time.time(),
            "reason": STORE_DOWN,
            "alertname": alertname,
            "attempt_id": None,
            "manual_steps": self.config.manual_steps(component),
            "monitor": self.monitor,
        }
        self._offline[component] = info
        self.metrics.escalations.labels(component).inc()
        self.metrics.manual_intervention.labels(component).set(1)
        self.audit.escalation(component, info)
        # Kept with the writes that wait for the store.
        self.store.events.add([(info["since"], "escalation", component, info)], self.monitor)
        log.error("%s needs a repair, but %s: handed to people", component, STORE_DOWN)

    def store_is_back(self) -> list[str]:
        """The store answers again: automation goes on; the components it was
        kept from."""
        back = list(self._offline)
        for component in back:
            info = self._offline.pop(component)
            self.metrics.manual_intervention.labels(component).set(
                1 if component in self._manual else 0
            )
            self.store.events.add(
                [
                    (
                        time.time(),
                        "manual_intervention_cleared",
                        component,
                        {"reason": "the history store answers again", "since": info["since"]},
                    )
                ],
                self.monitor,
            )
        return back

    async def clear(self, component: str, reason: str) -> None:
        """Back to automation (the group's hand-over ends once, however many say so)."""
        if self._offline.pop(component, None) is not None:
            self.metrics.manual_intervention.labels(component).set(
                1 if component in self._manual else 0
            )
        if component not in self._manual:
            return
        try:
            await self.store.settings.put(
                f"{PREFIX}{component}",
                None,
                events=[
                    (time.time(), "manual_intervention_cleared", component, {"reason": reason})
                ],
                monitor=self.monitor,
            )
        except StoreError as exc:
            log.warning("cannot end the hand-over of %s yet: %s", component, exc)
            return
        self._manual.pop(component, None)
        self.metrics.manual_intervention.labels(component).set(
            1 if component in self._offline else 0
        )
