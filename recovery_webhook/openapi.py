"""``GET /api/openapi.json``: the table of every operation the app serves.

The schemas come from the models in :mod:`recovery_webhook.schemas` and
:mod:`recovery_webhook.alerts` (see :mod:`recovery_webhook.openapi_gen`); a test
checks that this table and the app's routes name the same operations, and a
property-based fuzzer that the service answers as the document says.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.config import DEFAULT_DISPLAY_NAMES
from recovery_webhook.alerts import WebhookPayload
from recovery_webhook.openapi_gen import Operation, Parameter, build
from recovery_webhook.schemas import (
    HISTORY_LIMIT_DEFAULT,
    Attempt,
    EditorMessage,
    ErrorBody,
    Health,
    HistoryLimit,
    HistoryPage,
    MetricsSummary,
    PipelineStatus,
    WebhookAnswer,
)

ERROR_WORDS = {
    400: "Invalid request; `error` says what, `field` where.",
    401: "No bearer token.",
    403: "Wrong bearer token.",
    404: "Unknown component; `valid_components` lists the known ones.",
    409: "A repair of this component is already running.",
    413: "Body larger than the configured limit (1 MiB by default).",
    503: "The history store is unreachable (no repair runs without its lease); try again"
    " after `Retry-After` seconds.",
}
TEXT_ERROR_WORDS = {403: "A directory, not a file.", 404: "No such file."}

OPERATIONS = (
    Operation(
        "POST",
        "/api/alertmanager/webhook",
        "Receive Alertmanager notifications; repairs run in the background",
        WebhookAnswer,
        "Alerts recorded and repairs queued.",
        auth=True,
        body=WebhookPayload,
        errors=(400, 413),
    ),
    Operation(
        "GET", "/api/pipeline/status", "Pipeline health for engineers", PipelineStatus, "Status."
    ),
    Operation(
        "GET",
        "/api/pipeline/editor-message",
        "Whether editors can publish, in their words",
        EditorMessage,
        "Message.",
    ),
    Operation(
        "POST",
        "/api/pipeline/recovery/{component}",
        "Run the component's repair now and wait for its outcome",
        Attempt,
        "The attempt, successful or not.",
        auth=True,
        errors=(400, 404, 409, 413, 503),
        parameters=(
            Parameter(
                "component",
                "path",
                str,
                "A configured component; the seed's five by default.",
                examples=tuple(DEFAULT_DISPLAY_NAMES),
            ),
        ),
    ),
    Operation(
        "GET",
        "/api/pipeline/metrics",
        "Check and recovery totals (kept across restarts)",
        MetricsSummary,
        "Totals.",
    ),
    Operation(
        "POST",
        "/api/pipeline/force-check",
        "Probe every component now; concurrent calls share one run",
        PipelineStatus,
        "Status after the run.",
        auth=True,
        errors=(413,),
    ),
    Operation(
        "GET",
        "/api/pipeline/history",
        "Events, newest first",
        HistoryPage,
        "Events.",
        errors=(400, 503),
        parameters=(
            Parameter(
                "limit",
                "query",
                HistoryLimit,
                "How many events, newest first.",
                default=HISTORY_LIMIT_DEFAULT,
            ),
        ),
    ),
    Operation("GET", "/api/openapi.json", "This description", dict[str, Any], "OpenAPI 3.1."),
    Operation("GET", "/healthz", "Liveness of the monitor process", Health, "Alive."),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics (text format, or OpenMetrics on request)",
        str,
        "Metrics.",
        media=("text/plain", "application/openmetrics-text"),
    ),
    Operation("GET", "/", "The editors' status page", str, "HTML page.", media=("text/html",)),
    Operation(
        "GET",
        "/static/{filename}",
        "The status page's script, style sheet and icon",
        str,
        "The file.",
        errors=(403, 404),
        parameters=(Parameter("filename", "path", str, "A file of the page."),),
        media=(
            "text/css",
            "text/html",
            "text/javascript",
            "application/javascript",
            "image/svg+xml",
        ),
    ),
)


@functools.cache
def spec() -> dict[str, Any]:
    """The document (built once; read-only)."""
    return build(
        OPERATIONS,
        info={
            "title": "pipeline-recovery",
            "version": __version__,
            "description": "Health, recovery and history of the article publishing pipeline.",
        },
        error_model=ErrorBody,
        error_words=ERROR_WORDS,
        text_error_words=TEXT_ERROR_WORDS,
        # aiohttp's static files answer a missing file with an empty body.
        text_error_media=("text/plain", "application/octet-stream"),
    )


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(spec())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
