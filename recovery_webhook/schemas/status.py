"""The pipeline's health: ``GET /api/pipeline/status`` (the seed's
``PipelineStatus``) and ``pipeline-monitor probe --json``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import with_config
from typing_extensions import TypedDict

from exporter.model import ProbeResult, Status
from recovery_webhook.schemas.attempts import Attempt
from recovery_webhook.schemas.base import DOCUMENTED, Body, Timestamp
from recovery_webhook.schemas.editor import EditorState, Uptime
from recovery_webhook.schemas.slo import ErrorBudget


class ProbeDetail(Body):
    """What one probe found in its last run."""

    status: Status
    latency_ms: float
    error: str | None
    detail: str | None
    """What it measured, in words (free space, queue depth, the active target...)."""

    @classmethod
    def of(cls, result: ProbeResult) -> ProbeDetail:
        return cls(
            status=result.status,
            latency_ms=round(result.latency_seconds * 1000, 1),
            error=result.error,
            detail=result.detail,
        )


# A plain dict, as the seed's Python API has always handed them out.
@with_config(DOCUMENTED)
class RecentFailure(TypedDict):
    """A component turning degraded or unhealthy."""

    component: str
    status: Literal["degraded", "unhealthy"]
    error: str | None
    timestamp: Timestamp


class ComponentDetail(Body):
    """One component, for engineers."""

    display_name: str
    status: Status
    since: Timestamp
    """When it last changed status."""
    latency_ms: float
    """The slowest of its probes in their last run."""
    last_check: Timestamp | None
    error: str | None
    """The probes' error text (secrets removed)."""
    blocks_publishing: bool
    """Whether articles stop going out while it is unhealthy."""
    active_storage_target: str | None
    storage_targets: list[str]
    repair_in_progress: bool
    manual_intervention: bool
    """Automatic repair gave up: it waits for an engineer."""
    manual_intervention_detail: dict[str, Any] | None
    auto_recoverable: bool
    last_attempt: Attempt | None
    seen_by: dict[str, Status]
    """Each live monitor's view of it, by monitor name (one entry on a single node)."""
    probes: dict[str, ProbeDetail]
    """This monitor's own probes."""


class MonitorView(Body):
    """A live monitor of the group, and how it sees each component."""

    name: str
    """Its ``instance`` name."""
    this_monitor: bool
    """The monitor that gave this answer."""
    last_seen: Timestamp
    """Its last beat in the group's store."""
    components: dict[str, Status]


class HistoryAvailability(Body):
    """Whether the history store answers. While it does not, the monitors keep
    probing and serving from memory, keep what they could not write, and run no
    repair."""

    available: bool
    """It answers, and nothing waits to be written."""
    since: Timestamp
    """Since when it has been as it is."""
    error: str | None
    """Why it does not answer (no secrets)."""
    buffered_rows: int
    """Rows waiting to be written once it answers again."""
    dropped_rows: int
    """Rows dropped since the start because too many were waiting."""


class PipelineStatus(Body):
    """The pipeline's health: the seed's six fields first, then the detail.

    Also the seed's Python API: ``monitor.get_pipeline_status()`` returns it,
    with ``details`` for ``component_details``."""

    overall_status: Status
    components: dict[str, Status]
    uptime_percentage: float | None
    """Share of the last 24 hours when articles could be published; null before
    anything was measured."""
    recent_failures: list[RecentFailure]
    """The last ten transitions to degraded or unhealthy, newest first."""
    suggested_actions: list[str]
    is_auto_recoverable: bool
    """Every troubled component has an automatic repair."""
    can_publish: bool
    editor_state: EditorState
    stale: bool
    """The checks are late: what is shown may be out of date."""
    timestamp: Timestamp
    uptime: Uptime
    """Share of each window when articles could be published; null before
    anything was measured."""
    slo: ErrorBudget | None
    """The publishing SLO; null while the history store is unreachable."""
    component_details: dict[str, ComponentDetail]
    monitors: list[MonitorView]
    """The live monitors of the group, this one first."""
    history: HistoryAvailability

    @property
    def details(self) -> dict[str, ComponentDetail]:
        return self.component_details


class ProbeComponent(Body):
    """One component in a one-off probe run."""

    status: Status
    latency_ms: float
    error: str | None
    probes: dict[str, ProbeDetail]


class ProbeReport(Body):
    """``pipeline-monitor probe --json``: one run of every probe."""

    overall_status: Status
    can_publish: bool
    components: dict[str, ProbeComponent]
