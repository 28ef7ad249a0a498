"""/metrics of a running ``pipeline-monitor run`` process, scraped for real.

Real services up (PostgreSQL, MariaDB, RabbitMQ, Redis, S3, directories, the
stand-in validation service) and one dependency down. The Prometheus text must
pass ``promtool check metrics``; the OpenMetrics answer must parse and end with
``# EOF``; no series may appear twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from helpers import (
    AmqpQueue,
    MotoServer,
    StandinService,
    address,
    console_script,
    free_port,
    wait_until,
)
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

pytestmark = pytest.mark.integration

PROMTOOL = "/usr/bin/promtool"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
COMPONENTS = ("validation_service", "database", "queue", "storage", "network", "archive")
SEED_ENV = ("PIPELINE_CONFIG", "PIPELINE_CHECK_INTERVAL", "DATABASE_URL", "DATABASE_URL_FILE",
            "AUDIT_LOG_FILE", "ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_URL_FILE", "PIPELINE_API_TOKEN",
            "PIPELINE_API_TOKEN_FILE")  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the monitor's own variables."""
    env = {k: v for k, v in os.environ.items() if k not in SEED_ENV}
    return {**env, **extra}


class RunningMonitor:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def running_monitor(
    tmp_path: Path,
    pg_dsn: str,
    mysql_dsn: str,
    redis_url: str,
    amqp_url: str,
    amqp_queue: AmqpQueue,
    s3_server: MotoServer,
    s3_bucket: str,
    standin_service: StandinService,
) -> AsyncIterator[RunningMonitor]:
    secondary_bucket = await asyncio.to_thread(s3_server.create_bucket)
    down = free_port()
    s3 = {"endpoint_url": s3_server.endpoint, "access_key_id": "k", "secret_access_key": "s"}
    config = {
        "check_interval": "1s",
        "components": {
            "validation_service": {"probes": [{"type": "http", "url": standin_service.url}]},
            # Two probes measuring the same series: exported once.
            "database": {
                "probes": [{"type": "postgres", "dsn": pg_dsn}, {"type": "mysql", "dsn": mysql_dsn}]
            },
            "queue": {
                "probes": [
                    {"type": "rabbitmq", "url": amqp_url, "queues": [amqp_queue.name]},
                    {"type": "redis", "url": redis_url, "keys": ["pm-test:exposition"]},
                ]
            },
            "storage": {
                "probes": [
                    {
                        "type": "filesystem",
                        "path": str(tmp_path / "files"),
                        "secondary_path": str(tmp_path / "files2"),
                        "create_missing": True,
                    },
                    {
                        "type": "s3",
                        "bucket": s3_bucket,
                        "secondary": {"bucket": secondary_bucket, **s3},
                        **s3,
                    },
                ]
            },
            "network": {
                "probes": [{"type": "tcp", "targets": [address(pg_dsn), f"127.0.0.1:{down}"]}]
            },
            "archive": {
                "blocks_publishing": True,
                "probes": [{"type": "http", "url": f"http://127.0.0.1:{down}/health"}],
            },
        },
    }
    path = tmp_path / "pipeline.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    stderr = open(tmp_path / "stderr.log", "wb")
    process = await asyncio.create_subprocess_exec(
        console_script(),
        "run",
        "--config",
        str(path),
        "--port",
        str(port),
        env=clean_env(PIPELINE_STATE_DIR=str(tmp_path / "state")),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )
    monitor = RunningMonitor(process, port)
    try:
        yield monitor
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr.close()
        await asyncio.to_thread(s3_server.delete_bucket, secondary_bucket)


async def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics", headers=headers) as response:
            assert response.status == 200
            return response.headers["Content-Type"], await response.text()


async def test_promtool_and_openmetrics_on_a_live_scrape(
    running_monitor: RunningMonitor, tmp_path: Path
) -> None:
    async def every_component_probed() -> bool:
        try:
            _, text = await scrape(running_monitor.url)
        except aiohttp.ClientError:
            return False
        return all(
            f'pipeline_probe_last_run_timestamp_seconds{{component="{name}"}}' in text
            for name in COMPONENTS
        )

    await wait_until(every_component_probed, timeout=20, message="every component probed")

    content_type, text = await scrape(running_monitor.url)
    assert content_type.startswith("text/plain; version=0.0.4")
    check = await asyncio.create_subprocess_exec(
        PROMTOOL,
        "check",
        "metrics",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await check.communicate(text.encode())
    assert check.returncode == 0 and out == b"", f"promtool check metrics:\n{out.decode()}"

    families = {f.name: f for f in parse_text(text)}
    series = Counter(
        (s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples
    )
    assert [key for key, n in series.items() if n > 1] == []

    def value(name: str, **labels: str) -> float:
        family = families[name.removesuffix("_total")]
        (found,) = [s.value for s in family.samples if s.name == name and s.labels == labels]
        return found

    assert value("pipeline_component_up", component="archive") == 0
    assert value("pipeline_component_status", component="archive", status="unhealthy") == 1
    assert value("pipeline_component_status", component="network", status="degraded") == 1
    for name in ("validation_service", "database", "queue", "storage"):
        assert value("pipeline_component_up", component=name) == 1, status_lines(text)
    assert value("pipeline_can_publish") == 0
    assert value("pipeline_queue_messages", component="queue", queue=amqp_queue_name(text)) == 0
    assert value("pipeline_queue_messages", component="queue", queue="pm-test:exposition") == 0
    assert value("pipeline_database_max_connections", component="database") > 0
    assert value("pipeline_storage_active_target", component="storage", target="primary") == 1
    assert value("pipeline_storage_active_target", component="storage", target="secondary") == 0
    assert value("pipeline_probe_failures_total", component="archive") >= 1
    assert value("pipeline_check_interval_seconds") == 1
    assert value("pipeline_slo_objective_ratio") == 0.995
    assert "in the background" in families["pipeline_component_up"].documentation

    content_type, om = await scrape(running_monitor.url, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    assert om.endswith("# EOF\n")
    om_families = {f.name: f for f in parse_openmetrics(om)}
    assert om_families["pipeline_probe_runs"].type == "counter"
    assert om_families["pipeline_component_up"].type == "gauge"
    # The same families (the text format lists counters' _created as gauges of their own).
    assert set(om_families) >= {
        f for f in families if f.startswith("pipeline_") and not f.endswith("_created")
    }

    # SIGTERM: stop taking work, close everything, exit 0.
    running_monitor.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(running_monitor.process.wait(), 15) == 0
    log = (tmp_path / "stderr.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def amqp_queue_name(text: str) -> str:
    (name,) = {
        line.split('queue="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith('pipeline_queue_consumers{component="queue"')
    }
    return name


def status_lines(text: str) -> str:
    return "\n".join(
        line for line in text.splitlines() if line.startswith("pipeline_probe_success")
    )
