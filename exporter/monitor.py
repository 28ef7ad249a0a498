"""The exporter assembled: config in; probes, state, scheduler, metrics out.

Whoever runs the service (``recovery_webhook``, or the seed's Python API) builds
one :class:`Monitor`, starts it on its event loop and mounts ``metrics_handler``.
"""

from __future__ import annotations

import logging

from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from exporter.audit import AuditLog
from exporter.collector import PipelineCollector, make_registry
from exporter.config import MonitorConfig
from exporter.notify import TransitionNotifier, transition_message
from exporter.probes import build_probe, hold_client_loggers
from exporter.probes.base import Probe, ProbeContext
from exporter.scheduler import ProbeScheduler
from exporter.state import ComponentState, PipelineState, Transition

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, config: MonitorConfig, audit: AuditLog | None = None) -> None:
        hold_client_loggers()
        self.config = config
        self.audit = audit if audit is not None else AuditLog(config.audit)
        self._owns_audit = audit is None
        self.context = ProbeContext(keepalive=config.check_interval + 15.0)
        self.state = PipelineState(
            ComponentState(
                name=name,
                display_name=config.display_name(name),
                blocks_publishing=component.blocks_publishing,
                aggregate=component.aggregate,
            )
            for name, component in config.components.items()
        )
        probes: dict[str, list[Probe]] = {
            name: [build_probe(p, self.context) for p in component.probes]
            for name, component in config.components.items()
        }
        self.scheduler = ProbeScheduler(self.state, probes, config.check_interval, self.audit)
        self.registry: CollectorRegistry = make_registry(
            PipelineCollector(self.state, config.check_interval)
        )
        self.notifier: TransitionNotifier | None = None
        #: aiohttp handler serving this monitor's registry (text or OpenMetrics).
        self.handle_metrics: Handler = make_aiohttp_handler(self.registry)

    async def start(self) -> None:
        if self.config.alert_webhook.url:
            self.notifier = TransitionNotifier(self.config.alert_webhook, self.context.session)
            self.notifier.start()
            self.state.add_listener(self._notify)
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        await self.context.close()
        if self._owns_audit:
            self.audit.close()

    def _notify(self, transition: Transition) -> None:
        assert self.notifier is not None
        display = self.state.components[transition.component].display_name
        self.notifier.submit(transition_message(transition, display))
