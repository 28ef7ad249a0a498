"""The /metrics collector: reads component state, never runs a probe.

Metric families are built afresh on each scrape from the state the last probe
runs left, so a scrape costs microseconds and never waits on a dependency.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.model import EXPORTED_STATUSES, Status
from exporter.state import PipelineState

_BACKGROUND = (
    " Probes run in the background every check interval, each under its own timeout;"
    " this is the state their last run left, not a probe run at scrape time."
)

# Component-specific gauges: Measurement.metric -> (metric name, help, extra labels).
MEASUREMENT_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "queue_messages": (
        "pipeline_queue_messages",
        "Messages waiting in a queue (RabbitMQ ready messages, Redis list or stream length).",
        ("queue",),
    ),
    "queue_consumers": (
        "pipeline_queue_consumers",
        "Consumers attached to a queue.",
        ("queue",),
    ),
    "storage_free_bytes": (
        "pipeline_storage_free_bytes",
        "Free bytes on the storage directory's filesystem.",
        (),
    ),
    "database_connections": (
        "pipeline_database_connections",
        "Client connections open on the database server.",
        (),
    ),
    "database_max_connections": (
        "pipeline_database_max_connections",
        "The database server's connection limit.",
        (),
    ),
    "database_in_recovery": (
        "pipeline_database_in_recovery",
        "1 when the database server is a standby or read-only.",
        (),
    ),
}


class PipelineCollector(Collector):
    def __init__(self, state: PipelineState, check_interval: float) -> None:
        self.state = state
        self.check_interval = check_interval

    def describe(self) -> list[Metric]:
        # Registering must not read state: families with no samples.
        return [family for family in self._families(with_samples=False)]

    def collect(self) -> Iterator[Metric]:
        yield from self._families(with_samples=True)

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pipeline_component_up",
            "1 when the component is healthy or degraded, 0 when unhealthy." + _BACKGROUND,
            labels=["component"],
        )
        status = GaugeMetricFamily(
            "pipeline_component_status",
            "1 for the component's current status (healthy, degraded, unhealthy), 0 for the"
            " others." + _BACKGROUND,
            labels=["component", "status"],
        )
        changed = GaugeMetricFamily(
            "pipeline_component_last_change_timestamp_seconds",
            "Unix time of the component's last status change.",
            labels=["component"],
        )
        success = GaugeMetricFamily(
            "pipeline_probe_success",
            "1 when the probe's last run did not find the dependency unhealthy." + _BACKGROUND,
            labels=["component", "probe"],
        )
        duration = GaugeMetricFamily(
            "pipeline_probe_duration_seconds",
            "How long the probe's last run took." + _BACKGROUND,
            labels=["component", "probe"],
        )
        last_run = GaugeMetricFamily(
            "pipeline_probe_last_run_timestamp_seconds",
            "Unix time the component's last probe run finished.",
            labels=["component"],
        )
        runs = CounterMetricFamily(
            "pipeline_probe_runs",
            "Probe runs of the component.",
            labels=["component"],
        )
        failures = CounterMetricFamily(
            "pipeline_probe_failures",
            "Probe runs that found the component unhealthy.",
            labels=["component"],
        )
        targets = GaugeMetricFamily(
            "pipeline_storage_active_target",
            "1 for the storage target (primary, secondary) the component uses, 0 for the other.",
            labels=["component", "target"],
        )
        measured = {
            key: GaugeMetricFamily(name, help_text, labels=["component", *extra])
            for key, (name, help_text, extra) in MEASUREMENT_METRICS.items()
        }
        can_publish = GaugeMetricFamily(
            "pipeline_can_publish",
            "1 when no component that articles need is unhealthy." + _BACKGROUND,
        )
        interval = GaugeMetricFamily(
            "pipeline_check_interval_seconds", "Seconds between probe runs."
        )
        build = GaugeMetricFamily(
            "pipeline_monitor_build_info",
            "The monitor's version; always 1.",
            labels=["version", "python_version"],
        )
        if with_samples:
            self._fill(
                up, status, changed, success, duration, last_run, runs, failures, targets, measured
            )
            can_publish.add_metric([], 1.0 if self.state.can_publish() else 0.0)
            interval.add_metric([], self.check_interval)
            build.add_metric([__version__, platform.python_version()], 1.0)
        yield from (up, status, changed, success, duration, last_run, runs, failures, targets)
        yield from measured.values()
        yield from (can_publish, interval, build)

    def _fill(
        self,
        up: GaugeMetricFamily,
        status: GaugeMetricFamily,
        changed: GaugeMetricFamily,
        success: GaugeMetricFamily,
        duration: GaugeMetricFamily,
        last_run: GaugeMetricFamily,
        runs: CounterMetricFamily,
        failures: CounterMetricFamily,
        targets: GaugeMetricFamily,
        measured: dict[str, GaugeMetricFamily],
    ) -> None:
        for name, component in self.state.components.items():
            runs.add_metric([name], component.runs)
            failures.add_metric([name], component.failures)
            for target in component.targets:
                targets.add_metric(
                    [name, target], 1.0 if target == component.active_target else 0.0
                )
            if component.status is Status.UNKNOWN:
                continue  # never probed yet: no made-up health
            up.add_metric([name], 1.0 if component.up else 0.0)
            for value in EXPORTED_STATUSES:
                status.add_metric([name, value.value], 1.0 if value is component.status else 0.0)
            changed.add_metric([name], component.since)
            if component.last_check is not None:
                last_run.add_metric([name], component.last_check)
            # Two probes of one component may measure the same series (a primary
            # and a replica database): export the first, never a duplicate.
            exported: set[tuple[str, ...]] = set()
            for probe, result in component.probes.items():
                success.add_metric([name, probe], 0.0 if result.status is Status.UNHEALTHY else 1.0)
                duration.add_metric([name, probe], result.latency_seconds)
                for m in result.measurements:
                    extra = MEASUREMENT_METRICS[m.metric][2]
                    labels = [name, *(m.labels.get(label, "") for label in extra)]
                    if (m.metric, *labels) in exported:
                        continue
                    exported.add((m.metric, *labels))
                    measured[m.metric].add_metric(labels, m.value)


def make_registry(collector: PipelineCollector) -> CollectorRegistry:
    """A private registry with the pipeline's metrics and the monitor's own process."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
