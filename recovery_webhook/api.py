"""HTTP endpoints: the Alertmanager webhook, the seed's JSON API, health.

Mutating endpoints need the bearer token; read-only ones answer anyone, and
browsers on configured origins (CORS). Errors are JSON: ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from pydantic import BaseModel
from pydantic_core import to_json

from recovery_webhook.alerts import BodyNotJSON, PayloadError, parse_body
from recovery_webhook.auth import check_bearer
from recovery_webhook.config import AppConfig, ServerConfig
from recovery_webhook.editor import iso
from recovery_webhook.engine import RepairInProgress, UnknownComponent
from recovery_webhook.schemas import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    EditorMessage,
    ErrorBody,
    Health,
    HistoryPage,
    WebhookAnswer,
)
from recovery_webhook.service import PipelineService
from recovery_webhook.store import StoreUnavailable

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", PipelineService)
TOKEN = web.AppKey("token", str)
CONFIG = web.AppKey("config", AppConfig)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Every method but these needs the bearer token: a new mutating route is
# protected without anyone having to remember to list it.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY = {
    "/api/pipeline/status",
    "/api/pipeline/editor-message",
    "/api/pipeline/metrics",
    "/api/pipeline/history",
    "/api/openapi.json",
    "/healthz",
}


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` (a body model of :mod:`recovery_webhook.schemas`, or its plain
    JSON) as compact UTF-8 JSON, written by pydantic-core: a third of the cost of
    aiohttp's json_response (json.dumps), on every webhook answer."""
    return web.Response(
        body=to_json(data, fallback=str),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def error(
    status: int,
    message: str,
    *,
    field: str | None = None,
    valid_components: list[str] | None = None,
) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="pipeline-monitor"'} if status == 401 else None
    body: ErrorBody = {"error": message}
    if field is not None:
        body["field"] = field
    if valid_components is not None:
        body["valid_components"] = valid_components
    return json_response(body, status=status, headers=headers)


def authorised(request: web.Request) -> bool:
    return check_bearer(request.headers.get("Authorization"), request.app[TOKEN]) is None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Body cap, bearer token, body timeout, JSON errors and CORS, in one pass per request."""
    config = request.app[CONFIG].server
    limit = config.max_body_bytes
    path = request.path
    try:
        response = await _guarded(request, handler, config)
    except web.HTTPException as exc:
        if exc.status < 400 or not path.startswith("/api/"):
            raise
        message = exc.reason
        if exc.status == 413:
            message = f"request body too large (limit {limit} bytes)"
        response = error(exc.status, message)
        # A 405 must say which methods the resource takes (RFC 9110 section 15.5.6).
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except StoreUnavailable:
        # A read of the history, or a repair (which needs the store's lease).
        response = error(503, "the history store is unreachable; try again shortly")
        response.headers["Retry-After"] = "5"
    except Exception:
        if not path.startswith("/api/"):
            raise
        log.exception("%s %s failed", request.method, path)
        response = error(500, "internal error; the monitor's log has the details")
    origin = request.headers.get("Origin")
    if origin and path in READ_ONLY:
        origins = config.cors_origins
        if "*" in origins or origin in origins:
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
            response.headers["Access-Control-Max-Age"] = "600"
            if "*" not in origins:
                response.headers["Vary"] = "Origin"
    return response


async def _guarded(
    request: web.Request, handler: Handler, config: ServerConfig
) -> web.StreamResponse:
    limit = config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refused from its Content-Length, before any of it is read.
        return error(413, f"request body too large (limit {limit} bytes)")
    if not _utf8(request.headers.get("Authorization", "")):
        return error(400, "the Authorization header is not UTF-8 text")
    if request.method not in SAFE_METHODS:
        status = check_bearer(request.headers.get("Authorization"), request.app[TOKEN])
        if status == 401:
            return error(401, "missing bearer token (Authorization: Bearer <token>)")
        if status == 403:
            return error(403, "wrong bearer token")
        if request.can_read_body:
            refused = await _read_body(request, config.body_timeout)
            if refused is not None:
                return refused
    if request.method == "OPTIONS" and request.path in READ_ONLY:
        return web.Response(status=204)
    return await handler(request)


def _utf8(text: str) -> bool:
    """aiohttp decodes headers as UTF-8, keeping other bytes as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _read_body(request: web.Request, timeout: float) -> web.Response | None:
    """Read the whole body now, within ``timeout``; the handler's read() then gets
    it at once. None when read, else the answer (the connection is closed after it)."""
    try:
        if request.content.is_eof():  # all of it is here (the usual case): no timer needed
            await request.read()
        elif sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                await request.read()
        else:
            await asyncio.wait_for(request.read(), timeout)
        return None
    except asyncio.TimeoutError:
        response = error(408, f"the request body did not arrive within {timeout:g}s")
    except ConnectionError:  # the client hung up mid-body: nobody reads the answer
        log.info("%s %s: the client hung up before its body arrived", request.method, request.path)
        response = error(400, "the request body was cut off")
    except RequestPayloadError as exc:
        response = error(400, f"the request body is malformed: {exc}")
    response.force_close()
    return response


# -- handlers ----------------------------------------------------------------------


async def alertmanager_webhook(request: web.Request) -> web.Response:
    try:
        alerts = parse_body(await request.read())
    except BodyNotJSON as exc:
        return error(400, str(exc))
    except PayloadError as exc:
        return error(400, f"invalid Alertmanager payload: {exc}", field=exc.field)
    result = await request.app[SERVICE].engine.receive(alerts)
    answer: WebhookAnswer = {
        "status": "accepted",
        "received": result.received,
        "new": result.new,
        "duplicates": result.duplicates,
        "resolved": result.resolved,
        "repairs_queued": result.repairs_queued,
    }
    return json_response(answer)


def for_reader(request: web.Request, body: BaseModel) -> BaseModel | Any:
    """``body`` as this reader may see it: what repair actions printed (a
    command's output, the SQL of terminated sessions) only with the token."""
    if authorised(request):
        return body
    return _without_outputs(body.model_dump(mode="json"))


def _without_outputs(data: Any) -> Any:
    if isinstance(data, list):
        return [_without_outputs(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "actions" in data and isinstance(data["actions"], list):
        data = {
            **data,
            "actions": [
                {k: v for k, v in action.items() if k != "output"}
                if isinstance(action, dict)
                else action
                for action in data["actions"]
            ],
        }
    return {key: _without_outputs(value) for key, value in data.items()}


async def pipeline_status(request: web.Request) -> web.Response:
    return json_response(for_reader(request, await request.app[SERVICE].answers.status()))


async def editor_message(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    page = request.app[CONFIG].status_page
    now = time.time()
    view = service.answers.editor(now)
    return json_response(
        EditorMessage(
            message=view.message,
            status=view.status,
            can_publish=view.can_publish,
            timestamp=iso(now),
            state=view.state,
            headline=view.headline,
            headline_text=view.headline_text,
            short=view.short,
            details=view.details,
            advice=view.advice,
            notified_at=iso(view.notified_at),
            components=[c.body() for c in view.components],
            # What the status page shows besides the message (same source, same moment).
            incidents=await service.answers.incidents(now),
            uptime=await service.answers.uptime(now),
            history_available=service.store.available,
            title=page.title,
            refresh_seconds=page.refresh_seconds,
            timezone=page.timezone,
        )
    )


async def manual_recovery(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    component = request.match_info["component"]
    try:
        attempt = await service.attempt_recovery(component)
    except UnknownComponent:
        valid = list(service.config.components)
        return error(404, f"unknown component {component!r}", valid_components=valid)
    except RepairInProgress:
        return error(409, f"a repair of {component} is already running; try again when it ends")
    return json_response(attempt)


async def pipeline_metrics(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].answers.metrics_summary())


async def force_check(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    await service.force_check()
    return json_response(await service.answers.status())


async def history(request: web.Request) -> web.Response:
    raw = request.query.get("limit", str(HISTORY_LIMIT_DEFAULT))
    limit = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        return error(
            400,
            f"limit must be a whole number from 1 to {HISTORY_LIMIT_MAX}, got {raw!r}",
            field="limit",
        )
    events = await request.app[SERVICE].answers.history_events(limit)
    page = HistoryPage(events=events, count=len(events), limit=limit)
    return json_response(for_reader(request, page))


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def metrics(request: web.Request) -> web.StreamResponse:
    return await request.app[SERVICE].monitor.handle_metrics(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/alertmanager/webhook", alertmanager_webhook)
    app.router.add_get("/api/pipeline/status", pipeline_status)
    app.router.add_get("/api/pipeline/editor-message", editor_message)
    app.router.add_post("/api/pipeline/recovery/{component}", manual_recovery)
    app.router.add_get("/api/pipeline/metrics", pipeline_metrics)
    app.router.add_post("/api/pipeline/force-check", force_check)
    app.router.add_get("/api/pipeline/history", history)
