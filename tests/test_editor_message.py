"""GET /api/pipeline/editor-message carries everything the status page shows,
true to the OpenAPI description, and GET / serves the page under a strict CSP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from recovery_webhook.app import make_app
from recovery_webhook.config import AppConfig
from recovery_webhook.openapi import spec

pytestmark = pytest.mark.integration

SEED_KEYS = {"message", "status", "can_publish", "timestamp"}


def _validator() -> jsonschema.Draft202012Validator:
    document = {"$ref": "#/components/schemas/EditorMessage", **spec()}
    return jsonschema.Draft202012Validator(document)


async def _wait(
    client: TestClient[Any, Any], condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        response = await client.get("/api/pipeline/editor-message")
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        if condition(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within 10s; last: {body}")
        await asyncio.sleep(0.05)


async def test_editor_message_has_what_the_page_needs(
    tmp_path: Path,
    standin_service: Any,  # tests/conftest.py's StandinService
) -> None:
    config = AppConfig.model_validate(
        {
            "check_interval": 0.3,
            "state_dir": str(tmp_path),
            "components": {
                "validation_service": {
                    "probes": [{"type": "http", "url": standin_service.url, "timeout": 0.25}]
                },
                "storage": {
                    "probes": [
                        {
                            "type": "filesystem",
                            "path": str(tmp_path / "files"),
                            "create_missing": True,
                            "timeout": 0.25,
                        }
                    ]
                },
            },
            "status_page": {
                "title": "Newsroom <pipeline>",
                "refresh_seconds": 7,
                "timezone": "Europe/Paris",
            },
        }
    )
    validator = _validator()
    async with TestServer(make_app(config, token="t" * 32)) as server:
        async with TestClient(server) as client:
            body = await _wait(client, lambda b: b["state"] == "operational", "operational")
            validator.validate(body)
            assert SEED_KEYS <= set(body)
            assert "Publishing Pipeline: OPERATIONAL" in body["message"]
            assert body["headline_text"] == "Publishing Pipeline: OPERATIONAL"
            assert (body["title"], body["refresh_seconds"], body["timezone"]) == (
                "Newsroom <pipeline>",
                7,
                "Europe/Paris",
            )
            assert set(body["uptime"]) == {"24h", "7d", "30d"}
            assert body["incidents"] == []
            checks = next(c for c in body["components"] if c["name"] == "validation_service")
            assert checks["display_name"] == "Article checks"
            assert checks["error"] is None
            assert re.fullmatch(r"since \d\d:\d\d CES?T", checks["since_text"])

            standin_service.error(500)
            body = await _wait(
                client, lambda b: b["state"] == "down" and b["incidents"], "down with an incident"
            )
            validator.validate(body)
            assert body["can_publish"] is False
            (incident,) = body["incidents"]
            assert incident["component"] == "validation_service"
            assert incident["display_name"] == "Article checks"
            assert (incident["status"], incident["outcome"]) == ("unhealthy", "ongoing")
            assert incident["ended_at"] is None
            assert "answered HTTP 500" in incident["error"]
            assert re.fullmatch(r"Started at \d\d:\d\d CES?T", incident["when_text"])
            assert incident["duration_text"].endswith("so far")
            checks = next(c for c in body["components"] if c["name"] == "validation_service")
            assert "answered HTTP 500" in checks["error"]

            standin_service.ok()
            body = await _wait(
                client,
                lambda b: b["state"] == "operational" and b["incidents"][0]["ended_at"],
                "the incident's end",
            )
            validator.validate(body)
            (incident,) = body["incidents"]
            assert incident["outcome"] == "recovered_by_itself"
            assert incident["outcome_text"] == "Recovered by itself"
            assert incident["duration_text"].startswith("took ")
            assert body["uptime"]["24h"] is not None and body["uptime"]["24h"] < 100

            page = await client.get("/")
            assert page.status == 200
            policy = page.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy and "'unsafe-inline'" not in policy
            html = await page.text()
            # No inline script or style: everything is in the static files.
            assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js" defer>']
            assert "<style" not in html and " style=" not in html
            assert not re.search(r"<[^>]+\son[a-z]+=", html), "an inline event handler"
            for asset in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
                assert (await client.get(asset)).status == 200
            script = await (await client.get("/static/app.js")).text()
            assert "innerHTML" not in script and "insertAdjacentHTML" not in script
