"""Outages make a few clear lines, not a flood: every probe kind with a server,
against a refused and a hung one. The probe says so once when its state changes
(and once when it recovers), with its own error text; the client libraries'
loggers say nothing, and no traceback is written.

(dns uses the system's resolver, which cannot be pointed at a fault; filesystem
has no server.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from faults import FaultProxy, HangingListener
from helpers import S3_ACCESS_KEY, S3_SECRET_KEY, MotoServer, StandinService, host_port

from exporter.monitor import Monitor

pytestmark = pytest.mark.integration

KINDS = ["tcp", "http", "postgres", "mysql", "rabbitmq", "redis", "s3"]
# The clients the probes use, by the names of their loggers.
CLIENT_LOGGERS = ("pika", "psycopg", "pymysql", "redis", "boto3", "botocore", "urllib3", "aiohttp")
# What the probe's own error says, by fault. A refusal first cuts the connection a
# probe keeps open (postgres, redis), so that is what its first failing run says.
SAYS = {
    "refuse": ("Connection refused", "closed the connection", "Connection closed by the server",
               "Could not connect"),  # boto3's words name the endpoint
    "hang": ("no answer",),
}  # fmt: skip


@pytest.fixture
def upstreams(
    pg_dsn: str,
    mysql_dsn: str,
    amqp_url: str,
    redis_url: str,
    s3_server: MotoServer,
    s3_bucket: str,
    standin_service: StandinService,
) -> dict[str, tuple[tuple[str, int], Callable[[int], dict[str, Any]]]]:
    """Per kind: the real server's address, and the probe config through a port."""

    def swap(url: str, port: int) -> str:
        host, real = host_port(url)
        return url.replace(f"{host}:{real}", f"127.0.0.1:{port}", 1)

    return {
        "tcp": (host_port(pg_dsn), lambda p: {"type": "tcp", "targets": [f"127.0.0.1:{p}"]}),
        "http": (
            host_port(standin_service.url),
            lambda p: {"type": "http", "url": swap(standin_service.url, p)},
        ),
        "postgres": (host_port(pg_dsn), lambda p: {"type": "postgres", "dsn": swap(pg_dsn, p)}),
        "mysql": (host_port(mysql_dsn), lambda p: {"type": "mysql", "dsn": swap(mysql_dsn, p)}),
        "rabbitmq": (
            host_port(amqp_url),
            lambda p: {"type": "rabbitmq", "url": swap(amqp_url, p)},
        ),
        "redis": (host_port(redis_url), lambda p: {"type": "redis", "url": swap(redis_url, p)}),
        "s3": (
            host_port(s3_server.endpoint),
            lambda p: {
                "type": "s3",
                "bucket": s3_bucket,
                "endpoint_url": swap(s3_server.endpoint, p),
                "access_key_id": S3_ACCESS_KEY,
                "secret_access_key": S3_SECRET_KEY,
            },
        ),
    }


def monitor_for(make_monitor: Callable[..., Monitor], probe: dict[str, Any]) -> Monitor:
    return make_monitor(
        {"check_interval": 30, "components": {"dep": {"probes": [{**probe, "timeout": 1.5}]}}}
    )


async def cycles_until(monitor: Monitor, status: str, most: int = 8) -> None:
    for _ in range(most):
        await monitor.scheduler.run_cycle()
        if monitor.state.components["dep"].status.value == status:
            return
    raise AssertionError(f"still {monitor.state.components['dep'].status.value}, not {status}")


def check_lines(caplog: pytest.LogCaptureFixture, error: str, recovered: bool) -> None:
    clients = [
        r for r in caplog.records if r.name.split(".")[0] in CLIENT_LOGGERS and r.levelno >= 20
    ]
    assert not clients, [f"{r.name}: {r.getMessage()}" for r in clients]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    ours = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "exporter.scheduler"]
    expected = [("WARNING", f"dep: probe {ours[0][1].split()[2]} is unhealthy: {error}")]
    if recovered:
        expected.append(("INFO", f"dep: probe {ours[0][1].split()[2]} is healthy again"))
    assert ours == expected


@pytest.mark.parametrize("mode", ["refuse", "hang"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_outage_makes_one_line_from_the_probe(
    kind: str,
    mode: str,
    upstreams: dict[str, Any],
    make_monitor: Callable[..., Monitor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    (host, port), probe = upstreams[kind]
    if kind == "tcp" and mode == "hang":
        # A hung TCP server is one whose connect() never completes.
        with HangingListener(full_backlog=True) as listener:
            monitor = monitor_for(make_monitor, probe(listener.port))
            await cycles_until(monitor, "unhealthy")
            for _ in range(2):
                await monitor.scheduler.run_cycle()
            error = monitor.state.components["dep"].error or ""
        assert "no answer" in error, error
        check_lines(caplog, error, recovered=False)
        return

    async with FaultProxy(host, port) as proxy:
        monitor = monitor_for(make_monitor, probe(proxy.port))
        await cycles_until(monitor, "healthy")
        # Only the outage's lines count: on a loaded machine a first run (boto3
        # loading its models) may time out before the proxy is touched.
        caplog.clear()
        await proxy.set_mode(mode)  # type: ignore[arg-type]
        await cycles_until(monitor, "unhealthy")
        error = monitor.state.components["dep"].error or ""
        for _ in range(2):  # the outage goes on: no more lines
            await monitor.scheduler.run_cycle()
        await proxy.pass_through()
        await cycles_until(monitor, "healthy")
    assert any(words in error for words in SAYS[mode]), error
    check_lines(caplog, error, recovered=True)
