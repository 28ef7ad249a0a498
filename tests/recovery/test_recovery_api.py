"""The HTTP surface: bad requests get 4xx and run nothing; CORS; history's
limit; manual recovery's 404 and 409; the generated API token.

Every refused webhook request carries an alert that WOULD run a repair (a
``command`` that appends to a file) if it were let through, so "ran nothing"
is checked by that file, the history tables and the alert counter.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
from pathlib import Path

import pytest

from recovery.recovery_support import (
    PYTHON,
    TOKEN,
    build_config,
    make_alert,
    metric_value,
    payload,
    query_db,
    rule,
    wait_until,
)
from recovery_webhook.auth import TOKEN_FILE_NAME

pytestmark = pytest.mark.integration

LIMIT = 1 << 20
APPEND = "import sys; open(sys.argv[1], 'a').write('ran\\n')"


def _config(state_dir: Path, tmp_path: Path, port: int, **server):
    counter = tmp_path / "runs.log"
    return build_config(
        state_dir,
        {
            "validation_service": {
                "probes": [
                    {"type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout": 0.5}
                ]
            },
            "storage": {
                "probes": [
                    {
                        "type": "filesystem",
                        "path": str(tmp_path / "articles"),
                        "create_missing": True,
                        "free_bytes_degraded": None,
                        "free_bytes_unhealthy": None,
                        "timeout": 0.5,
                    }
                ]
            },
        },
        [
            rule(
                "validation_service",
                {"type": "command", "argv": [PYTHON, "-c", APPEND, str(counter)]},
            ),
            # Slow on purpose: a second manual repair while it runs is a conflict.
            rule(
                "storage",
                {"type": "command", "argv": [PYTHON, "-c", "import time; time.sleep(1.5)"]},
            ),
        ],
        server=server,
    )


async def _nothing_ran(app, tmp_path: Path) -> None:
    assert not (tmp_path / "runs.log").exists()
    assert await asyncio.to_thread(query_db, app.db_path, "SELECT count(*) FROM alerts") == [(0,)]
    assert await asyncio.to_thread(query_db, app.db_path, "SELECT count(*) FROM attempts") == [(0,)]
    text = await app.metrics()
    assert metric_value(text, "pipeline_alerts_received_total", status="firing") == 0.0


@pytest.fixture
async def app(app_factory, state_dir, tmp_path, unused_port):
    return await app_factory(
        _config(state_dir, tmp_path, unused_port, cors_origins=["https://dash.example"])
    )


async def _post(app, body: bytes | str, headers: dict | None = None, path: str = ""):
    headers = {"Content-Type": "application/json", **app.auth(), **(headers or {})}
    async with app.session.post(
        app.url + (path or "/api/alertmanager/webhook"), data=body, headers=headers
    ) as response:
        return response.status, await response.json()


def _alert_with(**changes) -> dict:
    alert = make_alert("validation_service")
    for key, value in changes.items():
        if value is None:
            alert.pop(key)
        else:
            alert[key] = value
    return alert


BAD_PAYLOADS = {
    "alerts": {"version": "4", "status": "firing", "receiver": "x"},
    "alerts-type": {"version": "4", "status": "firing", "alerts": "PipelineComponentDown"},
    "version": {**payload(make_alert("validation_service")), "version": "3"},
    "alerts.0.fingerprint": payload(_alert_with(fingerprint=None)),
    "alerts.0.labels": payload(_alert_with(labels={"component": "validation_service"})),
    "alerts.0.labels.component": payload(
        _alert_with(labels={"alertname": "PipelineComponentDown", "component": 7})
    ),
    "alerts.0.status": payload(_alert_with(status="burning")),
    "alerts.0.startsAt": payload(_alert_with(startsAt="yesterday")),
    "alerts.0": {"version": "4", "status": "firing", "alerts": ["PipelineComponentDown"]},
    "(body)": [payload(make_alert("validation_service"))],
}
FIELDS = {"alerts-type": "alerts"}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
async def test_a_wrong_payload_is_a_400_naming_the_field(app, tmp_path, case):
    status, body = await _post(app, json.dumps(BAD_PAYLOADS[case]))
    assert status == 400, body
    assert body["field"] == FIELDS.get(case, case), body
    assert body["error"].startswith("invalid Alertmanager payload: ")
    await _nothing_ran(app, tmp_path)


@pytest.mark.parametrize(
    "raw, words",
    [
        (b'{"version": "4", "alerts": [', "not JSON"),
        (b"", "not JSON"),
        (b'\xff\xfe{"version": "4"}', "not UTF-8"),
    ],
)
async def test_a_malformed_body_is_a_400(app, tmp_path, raw, words):
    status, body = await _post(app, raw)
    assert status == 400, body
    assert words in body["error"]
    await _nothing_ran(app, tmp_path)


def _oversized() -> bytes:
    alert = make_alert("validation_service")
    alert["annotations"]["description"] = "x" * 8000
    body = json.dumps(payload(*[{**alert, "fingerprint": f"{i:x}"} for i in range(140)]))
    assert len(body) > LIMIT
    return body.encode()


async def test_an_oversized_body_with_content_length_is_a_413(app, tmp_path):
    data = _oversized()
    async with app.session.post(
        app.url + "/api/alertmanager/webhook",
        data=io.BytesIO(data),
        headers={"Content-Type": "application/json", **app.auth()},
    ) as response:
        assert response.request_info.headers["Content-Length"] == str(len(data))
        assert response.status == 413
        body = await response.json()
    assert body["error"] == f"request body too large (limit {LIMIT} bytes)"
    await _nothing_ran(app, tmp_path)


async def test_an_oversized_chunked_body_is_a_413(app, tmp_path):
    data = _oversized()

    async def chunks():
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    async with app.session.post(
        app.url + "/api/alertmanager/webhook",
        data=chunks(),
        headers={"Content-Type": "application/json", **app.auth()},
    ) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.request_info.headers
        assert response.status == 413
        body = await response.json()
    assert body["error"] == f"request body too large (limit {LIMIT} bytes)"
    await _nothing_ran(app, tmp_path)


AUTH_CASES = [
    ({}, 401),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": "Bearer wrong-token-0123456789"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
]


@pytest.mark.parametrize("headers, expected", AUTH_CASES)
@pytest.mark.parametrize(
    "path",
    [
        "/api/alertmanager/webhook",
        "/api/pipeline/recovery/validation_service",
        "/api/pipeline/force-check",
    ],
)
async def test_mutating_endpoints_need_the_token(app, tmp_path, headers, expected, path):
    body = json.dumps(payload(make_alert("validation_service")))
    async with app.session.post(
        app.url + path, data=body, headers={"Content-Type": "application/json", **headers}
    ) as response:
        assert response.status == expected
        answer = await response.json()
        if expected == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in answer["error"]
    await _nothing_ran(app, tmp_path)


async def test_cors_answers_configured_origins_only(app):
    url = app.url + "/api/pipeline/status"
    async with app.session.get(url, headers={"Origin": "https://dash.example"}) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "Origin" in response.headers["Vary"]
    async with app.session.get(url, headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    async with app.session.options(url, headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "GET" in response.headers["Access-Control-Allow-Methods"]
    # Mutating endpoints are never offered to other origins.
    async with app.session.post(
        app.url + "/api/pipeline/force-check",
        headers={"Origin": "https://dash.example", **app.auth()},
    ) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1", "1.5", ""])
async def test_history_limit_out_of_range_is_a_400(app, limit):
    async with app.session.get(app.url + f"/api/pipeline/history?limit={limit}") as response:
        assert response.status == 400
        body = await response.json()
    assert body["field"] == "limit"


@pytest.mark.parametrize("limit", [1, 50, 1000])
async def test_history_limit_in_range_is_honoured(app, limit):
    await wait_until(lambda: _events_at_least(app, 2), message="a few events in history")
    body = await app.get_json(f"/api/pipeline/history?limit={limit}")
    assert body["limit"] == limit
    assert 1 <= body["count"] == len(body["events"]) <= limit


async def _events_at_least(app, n: int) -> bool:
    return len(await app.history()) >= n


async def test_manual_recovery_of_an_unknown_component_lists_the_known_ones(app):
    status, body = await _post(app, b"", path="/api/pipeline/recovery/printer")
    assert status == 404
    assert body["valid_components"] == ["validation_service", "storage"]
    assert "printer" in body["error"]


async def test_a_second_manual_recovery_while_one_runs_is_a_409(app):
    path = app.url + "/api/pipeline/recovery/storage"
    first = asyncio.create_task(app.session.post(path, headers=app.auth()))

    async def running() -> bool:
        return bool((await app.status())["component_details"]["storage"]["repair_in_progress"])

    await wait_until(running, message="the first repair runs")
    async with app.session.post(path, headers=app.auth()) as response:
        assert response.status == 409
        assert "already running" in (await response.json())["error"]
    async with await first as response:
        assert response.status == 200
        attempt = await response.json()
    assert attempt["status"] == "success"
    assert attempt["trigger"] == "manual"
    assert attempt["attempt_id"].startswith("storage_")
    assert len(await app.attempts()) == 1  # the refused one left no trace


async def test_without_a_configured_token_one_is_generated_and_never_logged(
    app_factory, state_dir, tmp_path, unused_port, caplog
):
    caplog.set_level(logging.INFO)
    config = _config(state_dir, tmp_path, unused_port)
    app = await app_factory(config, token=None)
    path = state_dir / TOKEN_FILE_NAME
    token = path.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert app.token == token

    messages = [r.getMessage() for r in caplog.records]
    assert any(str(path) in m and "generated" in m for m in messages), messages
    assert not any(token in m for m in messages)

    async with app.session.post(
        app.url + "/api/pipeline/force-check", headers=app.auth(token)
    ) as response:
        assert response.status == 200
    async with app.session.post(
        app.url + "/api/pipeline/force-check", headers=app.auth("x" * 43)
    ) as response:
        assert response.status == 403

    # The next start reuses it.
    await app.stop()
    again = await app_factory(config, token=None)
    assert again.token == token
    assert token not in app.audit_path.read_text()
    assert not any(token in r.getMessage() for r in caplog.records)


async def test_an_unknown_path_is_a_json_404(app):
    async with app.session.get(app.url + "/api/pipeline/nothing") as response:
        assert response.status == 404
        assert "error" in await response.json()
