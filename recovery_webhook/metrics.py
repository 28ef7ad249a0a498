"""Recovery figures, registered in the exporter's registry so /metrics has them."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

# `_created` series double every counter's series for a figure nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Repairs take from under a second (reconnect) to minutes (a restart waiting
# for a service to come back healthy).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RecoveryMetrics:
    def __init__(self, registry: CollectorRegistry, components: Iterable[str]) -> None:
        self.alerts_received = Counter(
            "pipeline_alerts_received",
            "Alerts received on the Alertmanager webhook, repeats included.",
            ["status"],
            registry=registry,
        )
        self.attempts = Counter(
            "pipeline_recovery_attempts",
            "Repair actions run, by result (success, failure, dry_run, interrupted).",
            ["component", "action", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "pipeline_recovery_duration_seconds",
            "Time from a repair action's start to the end of its verification.",
            ["component", "action"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.escalations = Counter(
            "pipeline_recovery_escalations",
            "Times a component was handed to people after failed repairs.",
            ["component"],
            registry=registry,
        )
        self.in_progress = Gauge(
            "pipeline_recovery_in_progress",
            "1 while a repair of the component runs.",
            ["component"],
            registry=registry,
        )
        self.manual_intervention = Gauge(
            "pipeline_component_manual_intervention",
            "1 while the component waits for people after an escalation.",
            ["component"],
            registry=registry,
        )
        for status in ("firing", "resolved"):
            self.alerts_received.labels(status)
        # Series exist from the start, so rules and dashboards see 0, not nothing.
        for component in components:
            self.escalations.labels(component)
            self.in_progress.labels(component).set(0)
            self.manual_intervention.labels(component).set(0)

    def declare_actions(self, actions: Iterable[tuple[str, str]], results: Iterable[str]) -> None:
        """Create the series of the repairs the rules can run, at 0.

        increase() and rate() cannot see a series' first value: without this, the
        first repair of each action after a start would count 0 on dashboards.
        """
        results = list(results)
        for component, action in actions:
            for result in results:
                self.attempts.labels(component, action, result)
            self.duration.labels(component, action)
