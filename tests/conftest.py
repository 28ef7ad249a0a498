"""Fixtures shared by every test tier: the real services, a moto S3 server, a
stand-in validation service, monitors that clean up after themselves, and a
guard that fails any async test which blocks the event loop.

The services are found through ``PIPELINE_TEST_POSTGRES_DSN``,
``PIPELINE_TEST_MYSQL_DSN``, ``PIPELINE_TEST_REDIS_URL`` and ``PIPELINE_TEST_AMQP_URL``
(default: the servers on this host's standard ports). ``make test`` sets them: to the
servers running here when they accept the tests' login, else to throwaway servers it
starts and stops (deploy/testservers.py). A fixture whose service does not answer
FAILS the test with the address and the error: integration tests never skip, so a
missing service cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from helpers import (
    AMQP_URL,
    MYSQL_DSN,
    POSTGRES_DSN,
    REDIS_URL,
    AmqpQueue,
    Harness,
    MotoServer,
    StandinService,
    free_port,
    mysql_admin,
    start_moto_server,
    with_database,
)

from exporter.audit import AuditLog
from exporter.config import AuditConfig, MonitorConfig
from exporter.monitor import Monitor
from exporter.probes.base import redact_url

pytest_plugins = ["pytester"]

# A callback that holds the event loop longer than this fails the test (see
# _no_blocking_event_loop). asyncio measures wall time, so on a loaded 2-core
# runner an honest callback also "takes" what it waits for the CPU and for the
# GIL (held by probe threads parsing boto3's models, for instance): half a
# second has been seen. One second stays clear of that noise and still catches
# what matters: a blocking connect, read, sleep or DNS lookup in a coroutine
# waits its full timeout (1 s and more). Set PIPELINE_TEST_SLOW_CALLBACK=0.1 on a
# quiet machine for a stricter run.
SLOW_CALLBACK_SECONDS = float(os.environ.get("PIPELINE_TEST_SLOW_CALLBACK", "1.0"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_blocking(reason): the test may block its event loop (say why); no blocking guard",
    )


# -- the services on this host ---------------------------------------------------


def _unavailable(service: str, url: str, exc: BaseException) -> None:
    pytest.fail(
        f"{service} is not answering at {redact_url(url)}: {type(exc).__name__}: {exc}\n"
        "Integration tests need the real service (`make test` provides it); they never skip.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the PostgreSQL test database (trust auth, user postgres)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError) as exc:
        _unavailable("PostgreSQL", POSTGRES_DSN, exc)
    return POSTGRES_DSN


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database of its own, dropped afterwards."""
    import psycopg

    name = f"pm_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield with_database(pg_dsn, name)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def mysql_dsn() -> str:
    """DSN of the MariaDB/MySQL test database (root, empty password)."""
    import pymysql

    from exporter.probes.mysql import connect_args

    try:
        pymysql.connect(**connect_args(MYSQL_DSN, 3)).close()
    except (pymysql.MySQLError, OSError) as exc:
        _unavailable("MariaDB", MYSQL_DSN, exc)
    return MYSQL_DSN


@pytest.fixture
def mysql_user(mysql_dsn: str) -> Iterator[Callable[..., str]]:
    """Create users (with a password and given grants) that are dropped afterwards."""
    created: list[str] = []

    def create(password: str, grant: str = "ALL PRIVILEGES ON *.*") -> str:
        name = f"pm_{uuid.uuid4().hex[:12]}"
        with mysql_admin(mysql_dsn) as admin, admin.cursor() as cur:
            for host in ("%", "localhost"):
                escaped = host.replace("%", "%%")  # pymysql formats the query with %
                cur.execute(f"CREATE USER '{name}'@'{escaped}' IDENTIFIED BY %s", (password,))
                cur.execute(f"GRANT {grant} TO '{name}'@'{host}'")
        created.append(name)
        return name

    yield create
    with mysql_admin(mysql_dsn) as admin, admin.cursor() as cur:
        for name in created:
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        _unavailable("Redis", REDIS_URL, exc)
    return REDIS_URL


@pytest.fixture(scope="session")
def amqp_url() -> str:
    import pika.exceptions

    try:
        params = pika.URLParameters(AMQP_URL)
        params.socket_timeout = params.stack_timeout = 3
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        _unavailable("RabbitMQ", AMQP_URL, exc)
    return AMQP_URL


@pytest.fixture
def amqp_queue(amqp_url: str) -> Iterator[AmqpQueue]:
    """A fresh queue on the real broker, deleted (with its messages) afterwards."""
    queue = AmqpQueue(amqp_url, f"pm-test-{uuid.uuid4().hex[:12]}")
    connection = queue.connection()
    connection.channel().queue_declare(queue.name)
    connection.close()
    yield queue
    connection = queue.connection()
    connection.channel().queue_delete(queue.name)
    connection.close()


@pytest.fixture
def unused_port() -> int:
    return free_port()


# -- S3: moto's server on loopback --------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """A moto S3 server for the whole session; tests create (and delete) their buckets."""
    server = start_moto_server()
    try:
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> Iterator[str]:
    """A fresh, empty bucket, deleted with its objects afterwards."""
    name = s3_server.create_bucket()
    yield name
    s3_server.delete_bucket(name)


# -- a stand-in for the article validation service ----------------------------------


@pytest.fixture
async def standin_service() -> AsyncIterator[StandinService]:
    service = StandinService()
    app = web.Application()
    app.router.add_get("/health", service.handle_health)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    service.base_url = f"http://127.0.0.1:{port}"
    try:
        yield service
    finally:
        service.released.set()
        await runner.cleanup()


# -- monitors built for a test, stopped after it --------------------------------------


@pytest.fixture
async def make_monitor() -> AsyncIterator[Callable[..., Monitor]]:
    """Build Monitors from a config (dict or model); each is stopped at teardown.

    Unless an ``audit`` is given, each monitor gets a private audit logger that
    writes nowhere, so monitors of different tests never share handlers.
    """
    made: list[tuple[Monitor, AuditLog | None]] = []

    def make(config: MonitorConfig | dict[str, Any], audit: AuditLog | None = None) -> Monitor:
        if isinstance(config, dict):
            config = MonitorConfig.model_validate(config)
        own = None
        if audit is None:
            own = audit = AuditLog(
                AuditConfig(), stream=False, name=f"test.audit.{uuid.uuid4().hex}"
            )
        monitor = Monitor(config, audit=audit)
        made.append((monitor, own))
        return monitor

    yield make
    for monitor, own in reversed(made):
        await monitor.stop()
        if own is not None:
            own.close()


@pytest.fixture
def probe_harness(make_monitor: Callable[..., Monitor]) -> Callable[..., Harness]:
    """``probe_harness({"type": "tcp", ...}, interval=10)`` -> a Harness to ``await .run()``."""

    def make(probe: dict[str, Any], interval: float = 10.0, component: str = "dep") -> Harness:
        monitor = make_monitor(
            {"check_interval": interval, "components": {component: {"probes": [probe]}}}
        )
        return Harness(monitor, component)

    return make


# -- nothing may block the event loop ---------------------------------------------------


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.found.append(message)


@pytest.fixture
async def _loop_blocking_guard() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    logger = logging.getLogger("asyncio")
    recorder = _SlowCallbacks()
    level = logger.level
    if not logger.isEnabledFor(logging.WARNING):
        logger.setLevel(logging.WARNING)
    logger.addHandler(recorder)
    debug, threshold = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
    try:
        yield
    finally:
        loop.set_debug(debug)
        loop.slow_callback_duration = threshold
        logger.removeHandler(recorder)
        logger.setLevel(level)
    if recorder.found:
        pytest.fail(
            f"the event loop was blocked for more than {SLOW_CALLBACK_SECONDS:g}s:\n  "
            + "\n  ".join(recorder.found),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _no_blocking_event_loop(request: pytest.FixtureRequest) -> None:
    """Every async test runs with asyncio's slow-callback detection, and fails if it fires.

    On for all async tests rather than opt-in: a blocking call slipping into a
    probe or a handler is exactly the bug no one looks for, so the guard must be
    where no one thinks of it. The threshold (SLOW_CALLBACK_SECONDS) is generous
    enough for a noisy 2-core runner; a test that blocks on purpose says so with
    ``@pytest.mark.allow_blocking("why")``. Set up first and torn down last, the
    guard also covers the fixtures' async set-up and teardown.
    """
    if not inspect.iscoroutinefunction(getattr(request, "function", None)):
        return
    if request.node.get_closest_marker("allow_blocking"):
        return
    request.getfixturevalue("_loop_blocking_guard")
