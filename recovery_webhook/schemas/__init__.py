"""Every JSON body of the HTTP API, declared once.

The handlers build these; ``GET /api/openapi.json`` is generated from them and
the table of operations in :mod:`recovery_webhook.openapi`; the seed's Python API
(``PipelineStatus``, ``RecoveryAttempt``) and ``pipeline-monitor probe --json``
are these same models. One module per concern:

* :mod:`.status`: the pipeline's health, per component and per probe;
* :mod:`.attempts`: a repair attempt and its actions;
* :mod:`.editor`: the editors' message, its components and incidents;
* :mod:`.history`: history events and the check and recovery totals;
* :mod:`.slo`: the publishing SLO's error budget;
* :mod:`.answers`: the webhook's answer, errors, liveness.

Alertmanager's payload is validated by the TypedDicts of
:mod:`recovery_webhook.alerts`, and its schema comes from them too.

A new field: add it to its model, with a docstring under it (the docstring is
its description in the OpenAPI document), and set it where the handler builds
the model; a model's fields have no defaults, so a builder that forgets it
fails. A new endpoint: its handler in :mod:`recovery_webhook.api` returns a
model; add a row to ``OPERATIONS`` in :mod:`recovery_webhook.openapi`, then
regenerate ``docs/api.md`` (``python -m recovery_webhook.apidoc``).
"""

from recovery_webhook.schemas.answers import ErrorBody, Health, WebhookAnswer
from recovery_webhook.schemas.attempts import ActionResult, Attempt
from recovery_webhook.schemas.base import Body, Timestamp
from recovery_webhook.schemas.editor import (
    EditorComponent,
    EditorMessage,
    EditorState,
    Incident,
    Outcome,
    Uptime,
)
from recovery_webhook.schemas.history import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    ComponentChecks,
    HistoryEvent,
    HistoryLimit,
    HistoryPage,
    MetricsSummary,
    RecoveryStats,
)
from recovery_webhook.schemas.slo import ErrorBudget
from recovery_webhook.schemas.status import (
    ComponentDetail,
    HistoryAvailability,
    MonitorView,
    PipelineStatus,
    ProbeComponent,
    ProbeDetail,
    ProbeReport,
    RecentFailure,
)
from recovery_webhook.states import AttemptStatus, Trigger

__all__ = [
    "HISTORY_LIMIT_DEFAULT",
    "HISTORY_LIMIT_MAX",
    "ActionResult",
    "Attempt",
    "AttemptStatus",
    "Body",
    "ComponentChecks",
    "ComponentDetail",
    "EditorComponent",
    "EditorMessage",
    "EditorState",
    "ErrorBody",
    "ErrorBudget",
    "Health",
    "HistoryAvailability",
    "HistoryEvent",
    "HistoryLimit",
    "HistoryPage",
    "Incident",
    "MetricsSummary",
    "MonitorView",
    "Outcome",
    "PipelineStatus",
    "ProbeComponent",
    "ProbeDetail",
    "ProbeReport",
    "RecentFailure",
    "RecoveryStats",
    "Timestamp",
    "Trigger",
    "Uptime",
    "WebhookAnswer",
]
