"""Which storage target (primary or secondary) each component uses.

A failover moves the component's probes here and records the choice in the
store, so that it survives a restart and every monitor of the group follows it
(they pick it up on their next refresh).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from exporter.scheduler import ProbeScheduler
from recovery_webhook.actions.base import StorageSwitch

log = logging.getLogger(__name__)

PREFIX = "target:"


class _Switch:
    def __init__(self, targets: StorageTargets, component: str) -> None:
        self._targets = targets
        self._component = component

    @property
    def active(self) -> str:
        probe = self._targets.scheduler.switchable(self._component)
        assert probe is not None
        return probe.active_target

    async def switch(self, target: str) -> None:
        await self._targets.switch(self._component, target)


class StorageTargets:
    def __init__(self, scheduler: ProbeScheduler, store: Any, monitor: str) -> None:
        self.scheduler = scheduler
        self.store = store
        self.monitor = monitor

    def switch_for(self, component: str) -> StorageSwitch | None:
        if self.scheduler.switchable(component) is None:
            return None
        return _Switch(self, component)

    async def switch(self, component: str, target: str) -> None:
        self.scheduler.switch_target(component, target)
        await self.store.settings.put(
            f"{PREFIX}{component}",
            target,
            events=[(time.time(), "storage_target", component, {"target": target})],
            monitor=self.monitor,
        )

    def follow(self, chosen: Mapping[str, Any]) -> None:
        """Use the targets the group chose (the store's ``target:`` settings)."""
        for component, target in chosen.items():
            probe = self.scheduler.switchable(component)
            if probe is None or probe.active_target == target:
                continue
            try:
                self.scheduler.switch_target(component, str(target))
            except ValueError as exc:
                log.warning("cannot use the storage target %s of %s: %s", target, component, exc)
            else:
                log.info("%s: now on the %s storage target, as the group chose", component, target)
