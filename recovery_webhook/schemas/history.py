"""What history tells: ``GET /api/pipeline/history`` and the totals of
``GET /api/pipeline/metrics``."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from recovery_webhook.schemas.base import Body, Timestamp
from recovery_webhook.schemas.slo import ErrorBudget

HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 1000
HistoryLimit = Annotated[int, Field(ge=1, le=HISTORY_LIMIT_MAX)]
"""``?limit=N`` of ``GET /api/pipeline/history``: how many events, newest first."""

EVENT_TYPES = (
    "transition, publishing, alert, recovery_attempt, escalation,"
    " manual_intervention_cleared, storage_target, monitor_started, monitor_stopped"
)


class HistoryEvent(Body):
    """One event; the fields after these four depend on its type (a
    ``recovery_attempt`` event carries the attempt's fields)."""

    model_config = ConfigDict(extra="allow")

    id: int
    timestamp: Timestamp
    type: Annotated[str, Field(description=EVENT_TYPES)]
    component: str | None


class HistoryPage(Body):
    """Events, newest first."""

    events: list[HistoryEvent]
    count: int
    limit: int


Count = Annotated[int, Field(ge=0)]


class RecoveryStats(Body):
    successful_recoveries: Count
    failed_recoveries: Count
    """Failed and interrupted attempts."""
    success_rate: float
    """Percent of the attempts that ended; 100 before any did."""
    interrupted: Count
    dry_runs: Count


class ComponentChecks(Body):
    checks: Count
    failures: Count


class MetricsSummary(Body):
    """Check and recovery totals, kept across restarts: the seed's four fields,
    then each component's."""

    total_checks: Count
    failed_checks: Count
    success_rate: float
    """Percent of checks that did not find the component unhealthy."""
    recovery_stats: RecoveryStats
    components: dict[str, ComponentChecks]
    slo: ErrorBudget | None
    """The publishing SLO; null while the history store is unreachable."""
