"""What the test modules import: small helpers and the classes behind the shared
fixtures (the fixtures themselves live in conftest.py).

Import from here, never from ``conftest``: several directories have a conftest.py
and ``import conftest`` gets whichever was loaded last.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import botocore.config
import pika
import pytest
from aiohttp import web

from exporter.model import ProbeResult
from exporter.monitor import Monitor
from exporter.state import ComponentState

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent

# The test servers: the ones running here by default; `make test` points these
# at throwaway servers where none runs (deploy/testservers.py).
POSTGRES_DSN = os.environ.get(
    "PIPELINE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_DSN = os.environ.get("PIPELINE_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("PIPELINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("PIPELINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def console_script(name: str = "pipeline-monitor") -> str:
    """The venv's console script, found next to the running interpreter."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{path} is missing: install the project (pip install -e '.[test]')"
    return str(path)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, f"{url!r} needs an explicit host and port"
    return parts.hostname, parts.port


def address(url: str) -> str:
    """``host:port`` of a URL or DSN, as tcp probes take it."""
    host, port = host_port(url)
    return f"{host}:{port}"


def with_netloc(
    url: str,
    *,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    path: str | None = None,
) -> str:
    """``url`` with parts of its address or credentials replaced."""
    parts = urlsplit(url)
    user = parts.username if user is None else user
    password = parts.password if password is None else password
    host = parts.hostname if host is None else host
    port = parts.port if port is None else port
    auth = ""
    if user:
        auth = f"{user}:{password}@" if password else f"{user}@"
    netloc = f"{auth}{host}:{port}" if port else f"{auth}{host}"
    return urlunsplit(parts._replace(netloc=netloc, path=parts.path if path is None else path))


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until it holds; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {timeout:g}s")
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], bool], timeout: float = 5.0, message: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {timeout:g}s")
        time.sleep(0.02)


def assert_no_secret(text: str | None, *secrets: str) -> None:
    """No secret, raw or percent-encoded (as in a URL), appears in ``text``."""
    if not text:
        return
    for secret in secrets:
        for form in {secret, quote(secret, safe="")}:
            assert form not in text, f"secret {secret[:2]}… leaked into: {text}"


# Dummy credentials: moto accepts any unless a test turns its authentication on.
S3_ACCESS_KEY = "testing-access-key"
S3_SECRET_KEY = "testing-secret-key"


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (a URL) pointed at another database of the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def mysql_admin(dsn: str) -> Any:
    """A PyMySQL connection (a context manager) from a mysql:// DSN."""
    import pymysql

    from exporter.probes.mysql import connect_args

    return pymysql.connect(**connect_args(dsn, 5))


@dataclass
class AmqpQueue:
    """A queue on the real broker; ``publish(n)`` puts n messages in it (confirmed)."""

    url: str
    name: str

    def connection(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.url))

    def publish(self, count: int) -> None:
        connection = self.connection()
        try:
            channel = connection.channel()
            channel.confirm_delivery()  # the broker has them when this returns
            for i in range(count):
                channel.basic_publish("", self.name, f"article {i}".encode())
        finally:
            connection.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (so connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, access_key: str = S3_ACCESS_KEY, secret_key: str = S3_SECRET_KEY) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}
            ),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto_server(env: dict[str, str] | None = None, timeout: float = 30.0) -> MotoServer:
    """Start ``python -m moto.server`` on a free loopback port and wait until it answers."""
    import urllib.error
    import urllib.request

    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    log.close()
    server = MotoServer(f"http://127.0.0.1:{port}", process, Path(log.name))
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = server.log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"moto server exited with {process.returncode}:\n{output}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
                return server
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"moto server did not answer within {timeout:g}s", pytrace=False)
            time.sleep(0.1)


@dataclass
class StandinService:
    """Answers GET /health as told: ``ok``, ``error`` (500), ``slow``, ``hang`` or ``json``."""

    base_url: str = ""
    mode: str = "ok"
    delay: float = 0.0
    body: Any = None
    status: int = 200
    hits: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"{self.base_url}/health"

    def ok(self) -> None:
        self.mode, self.status = "ok", 200

    def error(self, status: int = 500) -> None:
        self.mode, self.status = "error", status

    def slow(self, delay: float) -> None:
        self.mode, self.delay, self.status = "slow", delay, 200

    def hang(self) -> None:
        """Requests wait until ``released`` is set (at teardown), then get a 503."""
        self.mode = "hang"

    def json(self, body: Any, status: int = 200) -> None:
        self.mode, self.body, self.status = "json", body, status

    async def handle_health(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.mode == "hang":
            await self.released.wait()
            raise web.HTTPServiceUnavailable(text="released at shutdown")
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "json":
            return web.Response(
                text=json.dumps(self.body), status=self.status, content_type="application/json"
            )
        if self.mode == "error":
            return web.Response(text="internal error", status=self.status)
        return web.Response(text="ok", status=self.status)


@dataclass
class ProbeRun:
    result: ProbeResult
    elapsed: float
    component: ComponentState


class Harness:
    """One component with one probe, run through the real ProbeScheduler."""

    def __init__(self, monitor: Monitor, component: str) -> None:
        self.monitor = monitor
        self.component = component

    async def run(self) -> ProbeRun:
        started = time.perf_counter()
        await self.monitor.scheduler.run_cycle()
        elapsed = time.perf_counter() - started
        state = self.monitor.state.components[self.component]
        (result,) = state.probes.values()
        return ProbeRun(result, elapsed, state)
