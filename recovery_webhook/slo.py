"""The publishing SLO: the share of time articles could be published, and how
much of the error budget that leaves.

The SLI is measured on the history's publishing transitions: of the time in
the window that the monitor watched, the share when articles could be
published. Time it did not watch (stopped, or started and not yet checked)
counts neither way, so a monitor that was down spends no budget and earns none.
The uptime figures of the status answers are the same measure over fixed
windows.

Prometheus measures the same SLI on pipeline_can_publish (the recording rules
of alert_rules.yml), and its burn-rate alerts take their thresholds from the
objective that the monitor exports here: the dashboard, the alerts and these
answers share one objective, the config's ``slo.objective``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge

from recovery_webhook.config import SloConfig

# (time, kind, data) of a publishing, monitor_started or monitor_stopped event.
Transition = tuple[float, str | None, dict[str, Any]]


class TransitionHistory(Protocol):
    async def transitions_since(self, since: float) -> Sequence[Transition]:
        """The transitions from ``since`` on, and the last one before it."""
        ...


@dataclass(frozen=True)
class Availability:
    """Of a window, the seconds the monitor watched and those when articles could go out."""

    observed: float
    available: float

    @property
    def ratio(self) -> float | None:
        return self.available / self.observed if self.observed > 0 else None


def availability(transitions: Iterable[Transition], start: float, now: float) -> Availability:
    """What ``transitions`` (oldest first) say about the time from ``start`` to ``now``."""
    known, up = False, False
    cursor, observed, available = start, 0.0, 0.0
    for ts, kind, data in transitions:
        if kind != "publishing" and data.get("recorder") is False:
            continue  # a monitor that did not record for its group came or went
        ts = max(ts, start)
        if known:
            observed += ts - cursor
            available += (ts - cursor) if up else 0.0
        cursor = ts
        if kind == "publishing":
            known, up = True, bool(data.get("can_publish"))
        else:  # the recorder started or stopped: unknown until it has checked again
            known = False
    if known:
        observed += now - cursor
        available += (now - cursor) if up else 0.0
    return Availability(observed, available)


@dataclass(frozen=True)
class ErrorBudget:
    objective: float
    window: float
    measured: Availability

    @property
    def allowed_unavailable(self) -> float:
        """Seconds without publishing that the objective allows in the observed time."""
        return (1 - self.objective) * self.measured.observed

    @property
    def remaining(self) -> float | None:
        """The share of the budget left: 1 untouched, 0 spent, below 0 overspent.

        As Prometheus counts it: the error ratio against the one the objective
        allows, so a window not yet fully observed is judged on what was.
        """
        ratio = self.measured.ratio
        if ratio is None:
            return None
        return 1 - (1 - ratio) / (1 - self.objective)

    def as_json(self) -> dict[str, Any]:
        ratio, remaining = self.measured.ratio, self.remaining
        return {
            "objective_percentage": round(100 * self.objective, 6),
            "window_seconds": self.window,
            "sli_percentage": None if ratio is None else round(100 * ratio, 3),
            "observed_seconds": round(self.measured.observed, 1),
            "unavailable_seconds": round(self.measured.observed - self.measured.available, 1),
            "error_budget_seconds": round(self.allowed_unavailable, 1),
            "error_budget_remaining_percentage": (
                None if remaining is None else round(100 * remaining, 2)
            ),
        }


async def publishing_budget(
    history: TransitionHistory, config: SloConfig, now: float
) -> ErrorBudget:
    """The error budget of the window that ends ``now``."""
    start = now - config.window
    measured = availability(await history.transitions_since(start), start, now)
    return ErrorBudget(config.objective, config.window, measured)


def export_objective(registry: CollectorRegistry, config: SloConfig) -> None:
    """Serve the objective on /metrics, where the rules read their thresholds."""
    gauge = Gauge(
        "pipeline_slo_objective_ratio",
        "The publishing objective (slo.objective): the share of time articles must be"
        " publishable. The SLO rules derive their burn-rate thresholds from it.",
        registry=registry,
    )
    gauge.set(config.objective)
