"""Malformed and hostile requests get a 4xx, not a 500, and change nothing; every
HTML answer carries the page's headers and no answer names versions."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import pytest

from recovery.recovery_support import TOKEN, build_config, make_alert, payload

pytestmark = pytest.mark.integration

ENDPOINTS = [
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/pipeline/status"),
    ("GET", "/api/pipeline/editor-message"),
    ("GET", "/api/pipeline/metrics"),
    ("GET", "/api/pipeline/history"),
    ("GET", "/static/index.html"),
    ("POST", "/api/alertmanager/webhook"),
    ("POST", "/api/pipeline/recovery/storage"),
    ("POST", "/api/pipeline/force-check"),
]


def storage_config(state_dir, tmp_path, **server):
    return build_config(
        state_dir,
        {"storage": {"probes": [{"type": "filesystem", "path": str(tmp_path / "files")}]}},
        server=server,
    )


@pytest.fixture
async def app(app_factory, state_dir, tmp_path):
    return await app_factory(storage_config(state_dir, tmp_path))


async def alerts_recorded(app) -> list[dict]:
    return [e for e in await app.history() if e["type"] in ("alert", "recovery_attempt")]


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }

    def json(self) -> dict:
        return json.loads(self.body)


async def raw_request(url: str, data: bytes, *, then_close: bool = False) -> Answer | None:
    """Send ``data`` as is; the answer (the connection closed after it), or None
    when ``then_close`` hangs up without reading."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        if then_close:
            return None
        raw = await asyncio.wait_for(_read_answer(reader), 20)
        return Answer(raw)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def request_bytes(
    method: str,
    path: str,
    headers: list[bytes] | None = None,
    body: bytes = b"",
    length: int | None = None,
) -> bytes:
    """A request as bytes; ``length`` is the Content-Length it claims (``body``'s)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: monitor", *(headers or [])]
    if body or method == "POST":
        lines.append(b"Content-Length: %d" % (len(body) if length is None else length))
        lines.append(b"Content-Type: application/json")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def unfinished_webhook(body: bytes) -> bytes:
    """A webhook request that claims 5000 bytes of body and sends ``body``."""
    auth = f"Authorization: Bearer {TOKEN}".encode()
    return request_bytes("POST", "/api/alertmanager/webhook", [auth], body, length=5000)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_a_non_utf8_authorization_header_is_a_400(app, method, path, caplog):
    caplog.set_level(logging.ERROR)
    body = json.dumps(payload(make_alert("storage"))).encode() if method == "POST" else b""
    answer = await raw_request(
        app.url, request_bytes(method, path, [b"Authorization: Bearer \xff\xfe\x80tok"], body)
    )
    assert answer is not None
    assert answer.status in (400, 401), (answer.status, answer.body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert not await alerts_recorded(app)  # nothing was recorded


async def test_a_client_that_hangs_up_mid_body_is_no_error(app, caplog):
    caplog.set_level(logging.INFO)
    await raw_request(app.url, unfinished_webhook(b'{"version": "4", "alerts": ['), then_close=True)
    await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "hung up before its body arrived" in caplog.text


async def test_a_body_that_never_ends_gets_a_408_and_the_connection_closes(
    app_factory, state_dir, tmp_path
):
    app = await app_factory(storage_config(state_dir, tmp_path, body_timeout=0.5))
    answer = await raw_request(app.url, unfinished_webhook(b'{"version": "4"'))
    assert answer is not None and answer.status == 408
    assert answer.json()["error"] == "the request body did not arrive within 0.5s"
    assert answer.headers.get("connection") == "close"


async def test_deeply_nested_json_is_refused_as_too_deep(app):
    body = b'{"version": "4", "alerts": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with app.session.post(
        app.url + "/api/alertmanager/webhook", data=body, headers=app.auth()
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "the body's JSON is nested too deeply"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", "2026-01-01T00:00:00+99:99"),
        ("startsAt", "2026-01-01T00:00:00+24:00"),
        ("startsAt", "2026-01-01T00:00:00-00:60"),
        ("startsAt", "2026-02-30T00:00:00Z"),
        ("endsAt", "2026-01-01T00:00:00+99:99"),
        ("endsAt", "tomorrow"),
        ("endsAt", "2026-13-01T00:00:00Z"),
    ],
)
async def test_timestamps_are_validated_whole(app, field, value):
    alert = {**make_alert("storage"), field: value}
    async with app.session.post(
        app.url + "/api/alertmanager/webhook", json=payload(alert), headers=app.auth()
    ) as response:
        body = await response.json()
        assert response.status == 400, body
        assert body["field"] == f"alerts.0.{field}"
    assert not await alerts_recorded(app)


async def test_offsets_that_are_real_are_taken(app):
    alert = {**make_alert("storage"), "startsAt": "2026-01-01T05:30:00.123456789+05:30"}
    assert (await app.post_alerts(alert))["new"] == 1


# -- headers ---------------------------------------------------------------------------


PAGE_HEADERS = ("content-security-policy", "x-content-type-options")


@pytest.mark.parametrize("path", ["/", "/static/index.html"])
async def test_every_html_answer_carries_the_page_headers(app, path):
    async with app.session.get(app.url + path) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        policy = response.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
        assert response.headers.get("X-Frame-Options") == "DENY"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_answer_says_nosniff_and_names_no_version(app, method, path):
    async with app.session.request(method, app.url + path, headers=app.auth()) as response:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Server") == "pipeline-monitor", path
    async with app.session.get(app.url + "/no/such/page") as response:
        assert response.status == 404
        assert response.headers.get("Server") == "pipeline-monitor"
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
