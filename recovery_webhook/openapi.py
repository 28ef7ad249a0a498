"""``GET /api/openapi.json``: what every endpoint takes and answers.

Kept beside the handlers and exercised by a property-based fuzzer in the tests,
so that it stays true.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.config import DEFAULT_DISPLAY_NAMES
from recovery_webhook.alerts import MAX_ALERTS, MAX_LABELS, MAX_TEXT

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Invalid request; `error` says what, `field` where.",
        401: "No bearer token.",
        403: "Wrong bearer token.",
        404: "Unknown component; `valid_components` lists the known ones.",
        409: "A repair of this component is already running.",
        413: "Body larger than the configured limit (1 MiB by default).",
    }
    responses = {str(code): _json(_ERROR, words[code]) for code in codes}
    if 400 in codes:
        # aiohttp refuses a request line or header field over 8 KiB itself,
        # before any handler runs, and says so in plain text.
        responses["400"]["description"] += (
            " A request line or header over 8 KiB is refused by the HTTP server, in plain text."
        )
        responses["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return responses


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_MUTATING_ERRORS = (401, 403)

_NULLABLE_STRING = {"type": ["string", "null"]}
# Every string of the webhook payload is capped (recovery_webhook.alerts).
_TEXT = {"type": "string", "maxLength": MAX_TEXT}
_NULLABLE_NUMBER = {"type": ["number", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string"},
            "valid_components": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy", "unknown"]},
    "Attempt": {
        "type": "object",
        "required": ["attempt_id", "component", "status", "success", "actions"],
        "properties": {
            "attempt_id": {"type": "string", "examples": ["network_1732900000123"]},
            "component": {"type": "string"},
            "alertname": _NULLABLE_STRING,
            "trigger": {"type": "string", "enum": ["alert", "retry", "resume", "manual"]},
            "started_at": {"type": "number"},
            "ended_at": _NULLABLE_NUMBER,
            "status": {
                "type": "string",
                "enum": ["running", "success", "failure", "interrupted", "dry_run"],
            },
            "success": {"type": "boolean"},
            "error_message": _NULLABLE_STRING,
            "duration_ms": _NULLABLE_NUMBER,
            "actions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["action", "type", "result"],
                    "properties": {
                        "action": {"type": "string"},
                        "type": {"type": "string"},
                        "result": {"type": "string"},
                        "verified": {"type": "boolean"},
                        "output": {
                            "type": "string",
                            "description": "What the action printed (truncated, secrets"
                            " scrubbed); only for requests with the bearer token.",
                        },
                        "error": _NULLABLE_STRING,
                        "duration_ms": {"type": "number"},
                    },
                },
            },
        },
    },
    "PipelineStatus": {
        "type": "object",
        "required": [
            "overall_status",
            "components",
            "uptime_percentage",
            "recent_failures",
            "suggested_actions",
            "is_auto_recoverable",
        ],
        "properties": {
            "overall_status": {"$ref": "#/components/schemas/Status"},
            "components": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/Status"},
            },
            "uptime_percentage": {
                "type": ["number", "null"],
                "description": "Share of the last 24 hours when articles could be published;"
                " null before anything was measured.",
            },
            "recent_failures": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "component": {"type": "string"},
                        "status": {"type": "string"},
                        "error": _NULLABLE_STRING,
                        "timestamp": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "suggested_actions": {"type": "array", "items": {"type": "string"}},
            "is_auto_recoverable": {"type": "boolean"},
            "can_publish": {"type": "boolean"},
            "editor_state": {
                "type": "string",
                "enum": ["operational", "delayed", "down", "unknown"],
            },
            "stale": {"type": "boolean"},
            "timestamp": {"type": "string", "format": "date-time"},
            "uptime": {
                "type": "object",
                "properties": {k: _NULLABLE_NUMBER for k in ("24h", "7d", "30d")},
            },
            "component_details": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "display_name": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "since": {"type": "string", "format": "date-time"},
                        "latency_ms": {"type": "number"},
                        "last_check": {"type": ["string", "null"], "format": "date-time"},
                        "error": _NULLABLE_STRING,
                        "blocks_publishing": {"type": "boolean"},
                        "active_storage_target": _NULLABLE_STRING,
                        "storage_targets": {"type": "array", "items": {"type": "string"}},
                        "repair_in_progress": {"type": "boolean"},
                        "manual_intervention": {"type": "boolean"},
                        "manual_intervention_detail": {"type": ["object", "null"]},
                        "auto_recoverable": {"type": "boolean"},
                        "last_attempt": {
                            "oneOf": [{"$ref": "#/components/schemas/Attempt"}, {"type": "null"}]
                        },
                        "probes": {"type": "object"},
                    },
                },
            },
        },
    },
    "EditorMessage": {
        "type": "object",
        "required": ["message", "status", "can_publish", "timestamp"],
        "properties": {
            "message": {"type": "string"},
            "status": {"$ref": "#/components/schemas/Status"},
            "can_publish": {"type": "boolean"},
            "timestamp": {"type": "string", "format": "date-time"},
            "state": {"type": "string", "enum": ["operational", "delayed", "down", "unknown"]},
            "headline": {"type": "string", "examples": ["✅ Publishing Pipeline: OPERATIONAL"]},
            "headline_text": {
                "type": "string",
                "description": "The headline without its emoji.",
                "examples": ["Publishing Pipeline: OPERATIONAL"],
            },
            "short": {"type": "string", "examples": ["Yes, you can publish."]},
            "details": {"type": "array", "items": {"type": "string"}},
            "advice": {"type": "array", "items": {"type": "string"}},
            "notified_at": {"type": ["string", "null"], "format": "date-time"},
            "components": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "display_name": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "words": {"type": "string", "examples": ["Working normally"]},
                        "since": {"type": "string", "format": "date-time"},
                        "since_text": {
                            "type": "string",
                            "description": "Empty before the first check.",
                            "examples": ["since 14:02 UTC"],
                        },
                        "repair_in_progress": {"type": "boolean"},
                        "manual_intervention": {"type": "boolean"},
                        "error": {
                            **_NULLABLE_STRING,
                            "description": "The probes' error text (secrets removed);"
                            " null while healthy.",
                        },
                    },
                },
            },
            "incidents": {
                "type": "array",
                "description": "Recent incidents from history, newest first (at most 10).",
                "items": {"$ref": "#/components/schemas/Incident"},
            },
            "uptime": {
                "type": "object",
                "description": "Share of each window when articles could be published;"
                " null before anything was measured.",
                "properties": {k: _NULLABLE_NUMBER for k in ("24h", "7d", "30d")},
            },
            "title": {"type": "string", "description": "status_page.title"},
            "refresh_seconds": {
                "type": "integer",
                "minimum": 1,
                "description": "status_page.refresh_seconds: how often the page reloads this.",
            },
            "timezone": {
                "type": "string",
                "description": "status_page.timezone: the zone of the times in the words.",
            },
        },
    },
    "Incident": {
        "type": "object",
        "required": [
            "component",
            "display_name",
            "status",
            "outcome",
            "started_at",
            "ended_at",
            "duration_seconds",
        ],
        "properties": {
            "component": {"type": "string"},
            "display_name": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["degraded", "unhealthy"],
                "description": "The worst status reached.",
            },
            "outcome": {
                "type": "string",
                "enum": [
                    "ongoing",
                    "repaired_automatically",
                    "recovered_by_itself",
                    "fixed_by_engineers",
                ],
            },
            "started_at": {"type": "string", "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": "number", "description": "Until now while ongoing."},
            "repair_attempts": {"type": "integer", "minimum": 0},
            "escalated": {"type": "boolean"},
            "error": _NULLABLE_STRING,
            "what": {"type": "string", "examples": ["Not working"]},
            "when_text": {"type": "string", "examples": ["Started at 14:02 UTC"]},
            "outcome_text": {"type": "string", "examples": ["Repaired automatically"]},
            "duration_text": {"type": "string", "examples": ["took 3 minutes"]},
        },
    },
    "Metrics": {
        "type": "object",
        "required": ["total_checks", "failed_checks", "success_rate", "recovery_stats"],
        "properties": {
            "total_checks": {"type": "integer", "minimum": 0},
            "failed_checks": {"type": "integer", "minimum": 0},
            "success_rate": {"type": "number"},
            "recovery_stats": {
                "type": "object",
                "required": ["successful_recoveries", "failed_recoveries", "success_rate"],
                "properties": {
                    "successful_recoveries": {"type": "integer"},
                    "failed_recoveries": {"type": "integer"},
                    "success_rate": {"type": "number"},
                    "interrupted": {"type": "integer"},
                    "dry_runs": {"type": "integer"},
                },
            },
            "components": {"type": "object"},
        },
    },
    "History": {
        "type": "object",
        "required": ["events", "count", "limit"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "timestamp", "type"],
                    "properties": {
                        "id": {"type": "integer"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "type": {
                            "type": "string",
                            "description": "transition, publishing, alert, recovery_attempt,"
                            " escalation, manual_intervention_cleared, storage_target,"
                            " monitor_started, monitor_stopped",
                        },
                        "component": _NULLABLE_STRING,
                    },
                },
            },
            "count": {"type": "integer"},
            "limit": {"type": "integer"},
        },
    },
    "AlertmanagerPayload": {
        "type": "object",
        "description": "Alertmanager's webhook payload, version 4. Unknown fields are ignored.",
        "required": ["version", "status", "alerts"],
        "properties": {
            "version": {"type": "string", "enum": ["4"]},
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "receiver": _TEXT,
            "groupKey": _TEXT,
            "alerts": {
                "type": "array",
                "maxItems": MAX_ALERTS,
                "items": {
                    "type": "object",
                    "required": ["status", "labels", "startsAt", "fingerprint"],
                    "properties": {
                        "status": {"type": "string", "enum": ["firing", "resolved"]},
                        "labels": {
                            "type": "object",
                            "required": ["alertname"],
                            "maxProperties": MAX_LABELS,
                            "propertyNames": _TEXT,
                            "additionalProperties": _TEXT,
                        },
                        "annotations": {
                            "type": "object",
                            "propertyNames": _TEXT,
                            "additionalProperties": _TEXT,
                        },
                        "startsAt": {**_TEXT, "format": "date-time"},
                        "endsAt": {
                            "type": ["string", "null"],
                            "format": "date-time",
                            "maxLength": MAX_TEXT,
                        },
                        "generatorURL": {"type": ["string", "null"], "maxLength": MAX_TEXT},
                        "fingerprint": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                },
            },
        },
    },
    "WebhookAccepted": {
        "type": "object",
        "required": ["status", "received", "new", "duplicates", "resolved", "repairs_queued"],
        "properties": {
            "status": {"type": "string", "enum": ["accepted"]},
            "received": {"type": "integer"},
            "new": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "resolved": {"type": "integer"},
            "repairs_queued": {"type": "integer"},
        },
    },
}


def spec() -> dict[str, Any]:
    ref = "#/components/schemas/"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pipeline-recovery",
            "version": __version__,
            "description": "Health, recovery and history of the article publishing pipeline.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/alertmanager/webhook": {
                "post": {
                    "summary": "Receive Alertmanager notifications; repairs run in the background",
                    "security": _AUTH,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": ref + "AlertmanagerPayload"}}
                        },
                    },
                    "responses": {
                        "200": _json(
                            {"$ref": ref + "WebhookAccepted"}, "Alerts recorded and repairs queued."
                        ),
                        **_errors(400, *_MUTATING_ERRORS, 413),
                    },
                }
            },
            "/api/pipeline/status": {
                "get": {
                    "summary": "Pipeline health for engineers",
                    "responses": {"200": _json({"$ref": ref + "PipelineStatus"}, "Status.")},
                }
            },
            "/api/pipeline/editor-message": {
                "get": {
                    "summary": "Whether editors can publish, in their words",
                    "responses": {"200": _json({"$ref": ref + "EditorMessage"}, "Message.")},
                }
            },
            "/api/pipeline/recovery/{component}": {
                "post": {
                    "summary": "Run the component's repair now and wait for its outcome",
                    "security": _AUTH,
                    "parameters": [
                        {
                            "name": "component",
                            "in": "path",
                            "required": True,
                            "description": "A configured component; the seed's five by default.",
                            "schema": {"type": "string"},
                            "examples": {name: {"value": name} for name in DEFAULT_DISPLAY_NAMES},
                        }
                    ],
                    "responses": {
                        "200": _json({"$ref": ref + "Attempt"}, "The attempt, successful or not."),
                        **_errors(400, *_MUTATING_ERRORS, 404, 409, 413),
                    },
                }
            },
            "/api/pipeline/metrics": {
                "get": {
                    "summary": "Check and recovery totals (kept across restarts)",
                    "responses": {"200": _json({"$ref": ref + "Metrics"}, "Totals.")},
                }
            },
            "/api/pipeline/force-check": {
                "post": {
                    "summary": "Probe every component now; concurrent calls share one run",
                    "security": _AUTH,
                    "responses": {
                        "200": _json({"$ref": ref + "PipelineStatus"}, "Status after the run."),
                        **_errors(*_MUTATING_ERRORS, 413),
                    },
                }
            },
            "/api/pipeline/history": {
                "get": {
                    "summary": "Events, newest first",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 1000,
                                "default": 50,
                            },
                        }
                    ],
                    "responses": {
                        "200": _json({"$ref": ref + "History"}, "Events."),
                        **_errors(400),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness of the monitor process",
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"status": {"const": "ok"}}}, "Alive."
                        )
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format, or OpenMetrics on request)",
                    "responses": {
                        "200": {
                            "description": "Metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The editors' status page",
                    "responses": {
                        "200": {
                            "description": "HTML page.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(spec())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
