"""check-config catches what would fail later: an address or DSN its client
cannot use is refused at start-up (file, field, no secret), never left to fail
at run time as "probe crashed". A property test holds every probe kind to it:
whatever address the config takes, a run gives a finding, not a crash."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from exporter.audit import AuditLog
from exporter.config import AuditConfig, MonitorConfig
from exporter.monitor import Monitor
from recovery_webhook.cli import main

pytestmark = pytest.mark.unit

SECRET = "Pw-7731-secret"


def probe(body: str) -> str:
    return f"components:\n  dep:\n    probes:\n      - {body}\n"


def action(body: str) -> str:
    return textwrap.dedent(
        f"""\
        components: {{dep: {{probes: [{{type: tcp, targets: ['127.0.0.1:1']}}]}}}}
        recovery:
          rules:
            - alertname: "*"
              actions:
                - {body}
        """
    )


BAD = {
    "redis port not a number": (probe(f"{{type: redis, url: 'redis://:{SECRET}@h:abc/0'}}"), "url"),
    "redis port too big": (probe("{type: redis, url: 'redis://h:99999/0'}"), "url"),
    "redis scheme": (probe("{type: redis, url: 'http://h:6379/0'}"), "url"),
    "redis option": (probe("{type: redis, url: 'redis://h:6379/0?socket_timeout=soon'}"), "url"),
    "rabbitmq port not a number": (
        probe(f"{{type: rabbitmq, url: 'amqp://u:{SECRET}@h:abc/%2F'}}"),
        "url",
    ),
    "rabbitmq port too big": (probe("{type: rabbitmq, url: 'amqp://h:70000/'}"), "url"),
    "rabbitmq scheme": (probe("{type: rabbitmq, url: 'http://h:5672/'}"), "url"),
    "rabbitmq option": (probe("{type: rabbitmq, url: 'amqp://h:5672/?heartbeat=soon'}"), "url"),
    "postgres port in a URL": (
        probe(f"{{type: postgres, dsn: 'postgresql://u:{SECRET}@h:abc/db'}}"),
        "dsn",
    ),
    "postgres port as a keyword": (
        probe(f"{{type: postgres, dsn: 'host=h port=abc password={SECRET}'}}"),
        "dsn",
    ),
    "postgres not a DSN": (probe(f"{{type: postgres, dsn: 'u:{SECRET} at h'}}"), "dsn"),
    "postgres sslmode": (probe("{type: postgres, dsn: 'postgresql://h/db?sslmode=always'}"), "dsn"),
    "mysql port too big": (probe("{type: mysql, dsn: 'mysql://h:99999/db'}"), "dsn"),
    "s3 endpoint not a URL": (
        probe("{type: s3, bucket: articles, endpoint_url: 'storage host'}"),
        "endpoint_url",
    ),
    "s3 endpoint port": (
        probe("{type: s3, bucket: articles, endpoint_url: 'http://h:abc'}"),
        "endpoint_url",
    ),
    "tcp target with a path": (probe("{type: tcp, targets: ['h:5432/db']}"), "targets"),
    "rabbitmq_park url": (
        action(f"{{type: rabbitmq_park, url: 'amqp://u:{SECRET}@h:abc/', queue: q}}"),
        "url",
    ),
    "postgres_terminate dsn": (
        action(f"{{type: postgres_terminate, dsn: 'postgresql://u:{SECRET}@h:abc/db'}}"),
        "dsn",
    ),
    "command env name": (action("{type: command, argv: [/bin/true], env: {'A=B': x}}"), "env"),
    "alert webhook port": (
        "alert_webhook: {url: 'https://hooks.example:abc/x'}\n"
        "components: {dep: {probes: [{type: tcp, targets: ['127.0.0.1:1']}]}}\n",
        "alert_webhook.url",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_check_config_refuses_what_would_fail_later(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text, field = BAD[case]
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2, capsys.readouterr().out
    err = capsys.readouterr().err
    assert f"{path}: invalid configuration" in err
    assert field in err, err
    assert SECRET not in err


# -- the class: a config that is taken never makes a probe crash ---------------------

PORTS = st.one_of(
    st.integers(min_value=-5, max_value=200_000).map(str),
    st.text(alphabet="0123456789abc:-+ %", max_size=6),
)
OPTIONS = st.dictionaries(
    st.sampled_from(["timeout", "heartbeat", "socket_timeout", "sslmode", "db", "x"]),
    st.text(alphabet="0123456789abz.-", max_size=4),
    max_size=2,
)
TEMPLATES = {
    "redis": lambda port, query: {"type": "redis", "url": f"redis://127.0.0.1:{port}/0{query}"},
    "rabbitmq": lambda port, query: {"type": "rabbitmq", "url": f"amqp://127.0.0.1:{port}/{query}"},
    "postgres": lambda port, query: {
        "type": "postgres",
        "dsn": f"postgresql://postgres@127.0.0.1:{port}/test{query}",
    },
    "mysql": lambda port, query: {"type": "mysql", "dsn": f"mysql://root@127.0.0.1:{port}/t"},
    "s3": lambda port, query: {
        "type": "s3",
        "bucket": "articles",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "access_key_id": "k",
        "secret_access_key": "s",
    },
    "http": lambda port, query: {"type": "http", "url": f"http://127.0.0.1:{port}/health{query}"},
}


def run_once(probe_config: dict[str, Any]) -> str | None:
    """The error of one run of the probe, if the config is taken; None if refused."""
    try:
        config = MonitorConfig.model_validate(
            {"check_interval": 5, "components": {"dep": {"probes": [
                {**probe_config, "timeout": 0.5}]}}}
        )  # fmt: skip
    except ValidationError:
        return None

    async def run() -> str:
        monitor = Monitor(config, audit=AuditLog(AuditConfig(), stream=False))
        try:
            await monitor.scheduler.run_cycle()
            return monitor.state.components["dep"].error or ""
        finally:
            await monitor.stop()
            monitor.audit.close()

    return asyncio.run(run())


@pytest.mark.integration
@pytest.mark.parametrize("kind", TEMPLATES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(port=PORTS, options=OPTIONS)
def test_a_taken_address_never_crashes_its_probe(
    kind: str, port: str, options: dict[str, str]
) -> None:
    query = ("?" + "&".join(f"{k}={v}" for k, v in options.items())) if options else ""
    error = run_once(TEMPLATES[kind](port, query))
    assert error is None or not error.startswith("probe crashed"), error
