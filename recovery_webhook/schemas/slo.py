"""The publishing SLO's error budget, in the status and the metrics summary."""

from __future__ import annotations

from recovery_webhook.schemas.base import Body


class ErrorBudget(Body):
    """The publishing SLO over its window (``slo.objective``, ``slo.window``),
    counted from the monitor's own history of when articles could go out."""

    objective_percentage: float
    """The objective, e.g. 99.5."""
    window_seconds: float
    sli_percentage: float | None
    """Share of the observed time in the window when articles could be published."""
    observed_seconds: float
    """How much of the window the monitor watched."""
    unavailable_seconds: float
    """Of that, the time articles could not be published."""
    error_budget_seconds: float
    """The unavailable time the objective allows: (1 - objective) x observed."""
    error_budget_remaining_percentage: float | None
    """100 untouched, 0 spent, below 0 overspent."""
