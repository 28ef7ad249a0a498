"""The audit log: the seed's line format and event names, the JSON-lines option,
rotation of the file named by AUDIT_LOG_FILE, and no secret in it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import StandinService, wait_until_sync

from exporter.audit import LOGGER_NAME, AuditLog, HealthCheckSampler
from exporter.config import AuditConfig, ConfigError, MonitorConfig, load_config
from exporter.monitor import Monitor

pytestmark = pytest.mark.integration

PASSWORD = "Aud1t-secret!pw"

# TIMESTAMP - LOGGER_NAME - LEVEL - MESSAGE, as the seed's guide shows it.
LINE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) - (?P<logger>[\w.]+) - "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) - (?P<event>[A-Z_]+): (?P<payload>.*)$"
)
KEY_VALUES = re.compile(r"^component=(?P<component>\w+), error=(?P<error>.+)$")


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    return path


def components(standin_url: str, refused_port: int) -> str:
    return f"""
components:
  validation_service:
    probes: [{{type: http, url: "{standin_url}"}}]
  database:
    probes: [{{type: postgres, dsn: "postgresql://postgres:{PASSWORD}@127.0.0.1:{refused_port}/x"}}]
"""


async def run_monitor(
    make_monitor: Callable[..., Monitor], config: MonitorConfig, cycles: Callable[[], object]
) -> None:
    audit = AuditLog(config.audit, stream=False)
    try:
        monitor = make_monitor(config, audit=audit)
        await cycles_of(monitor, cycles)
    finally:
        audit.close()


async def cycles_of(monitor: Monitor, cycles: Callable[[], object]) -> None:
    steps = cycles()
    assert isinstance(steps, list)
    for step in steps:
        if callable(step):
            step()
        else:
            for _ in range(step):
                await monitor.scheduler.run_cycle()


async def test_text_lines_follow_the_seed(
    tmp_path: Path,
    make_monitor: Callable[..., Monitor],
    standin_service: StandinService,
    unused_port: int,
) -> None:
    audit_file = tmp_path / "logs" / "pipeline_audit.log"  # the directory is created
    path = config_file(tmp_path, components(standin_service.url, unused_port))
    config = load_config(MonitorConfig, path, environ={"AUDIT_LOG_FILE": str(audit_file)})
    await run_monitor(
        make_monitor, config, lambda: [1, standin_service.hang, standin_service.error, 2]
    )

    lines = audit_file.read_text().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    matches = [m for m in parsed if m]
    assert {m["logger"] for m in matches} == {LOGGER_NAME}

    checks = [json.loads(m["payload"]) for m in matches if m["event"] == "HEALTH_CHECK"]
    assert len(checks) == 6  # two components, three cycles
    assert all(m["level"] == "INFO" for m in matches if m["event"] == "HEALTH_CHECK")
    first = next(c for c in checks if c["component"] == "validation_service")
    assert first["status"] == "healthy"
    assert isinstance(first["latency_ms"], float) and "error" not in first
    last = [c for c in checks if c["component"] == "validation_service"][-1]
    assert last["status"] == "unhealthy"
    assert last["error"] == f"{standin_service.url} answered HTTP 500"

    failures = [m for m in matches if m["event"] == "FAILURE_DETECTED"]
    # Once per transition to unhealthy, not on every unhealthy run.
    assert [m["level"] for m in failures] == ["ERROR", "ERROR"]
    found = {
        kv["component"]: kv["error"]
        for kv in (KEY_VALUES.match(m["payload"]) for m in failures)
        if kv
    }
    assert set(found) == {"database", "validation_service"}
    assert "Connection refused" in found["database"]
    assert found["validation_service"] == f"{standin_service.url} answered HTTP 500"

    text = audit_file.read_text()
    assert PASSWORD not in text


async def test_json_lines(
    tmp_path: Path,
    make_monitor: Callable[..., Monitor],
    standin_service: StandinService,
    unused_port: int,
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    path = config_file(
        tmp_path, "audit: {format: json}\n" + components(standin_service.url, unused_port)
    )
    config = load_config(MonitorConfig, path, environ={"AUDIT_LOG_FILE": str(audit_file)})
    await run_monitor(make_monitor, config, lambda: [2])

    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert {r["event"] for r in records} == {"HEALTH_CHECK", "FAILURE_DETECTED"}
    for record in records:
        assert record["logger"] == LOGGER_NAME
        assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+\+00:00$", record["timestamp"])
    failure = next(r for r in records if r["event"] == "FAILURE_DETECTED")
    assert failure["level"] == "ERROR"
    assert failure["component"] == "database"
    assert "Connection refused" in failure["error"]
    health = [r for r in records if r["event"] == "HEALTH_CHECK"]
    assert len(health) == 4
    assert {r["status"] for r in health} == {"healthy", "unhealthy"}
    assert PASSWORD not in audit_file.read_text()


async def test_health_checks_on_a_change_and_every_n_checks(
    tmp_path: Path,
    make_monitor: Callable[..., Monitor],
    standin_service: StandinService,
    unused_port: int,
) -> None:
    audit_file = tmp_path / "audit.log"
    path = config_file(
        tmp_path,
        "audit: {health_check_every: 3}\n" + components(standin_service.url, unused_port),
    )
    config = load_config(MonitorConfig, path, environ={"AUDIT_LOG_FILE": str(audit_file)})
    assert config.audit.health_check_every == 3
    # validation_service: healthy for 5 checks, unhealthy for 4, healthy again.
    # database: unhealthy throughout.
    await run_monitor(
        make_monitor, config, lambda: [5, standin_service.error, 4, standin_service.ok, 1]
    )

    matches = [m for m in map(LINE.match, audit_file.read_text().splitlines()) if m]
    checks = [json.loads(m["payload"]) for m in matches if m["event"] == "HEALTH_CHECK"]

    def statuses(component: str) -> list[str]:
        return [c["status"] for c in checks if c["component"] == component]

    # Checks 1 (the first) and 4 (third since), 6 (a change) and 9, 10 (a change).
    assert statuses("validation_service") == [
        "healthy",
        "healthy",
        "unhealthy",
        "unhealthy",
        "healthy",
    ]
    assert statuses("database") == ["unhealthy"] * 4  # checks 1, 4, 7, 10
    # Other events are never thinned out.
    failures = [m["payload"] for m in matches if m["event"] == "FAILURE_DETECTED"]
    assert sorted(f.split(",")[0] for f in failures) == [
        "component=database",
        "component=validation_service",
    ]


@pytest.mark.unit
def test_the_sampler_writes_changes_and_one_check_in_n() -> None:
    sampler = HealthCheckSampler(every=4)
    written = [
        sampler.due("db", status) for status in ["healthy"] * 9 + ["degraded", "healthy", "healthy"]
    ]
    assert written == [True, False, False, False, True, False, False, False, True] + [
        True,
        True,
        False,
    ]
    assert sampler.due("queue", "healthy"), "each component on its own"


@pytest.mark.unit
def test_every_check_is_written_by_default(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.log"
    config = AuditConfig(file=audit_file)
    assert config.health_check_every == 1
    audit = AuditLog(config, stream=False)
    try:
        for _ in range(5):
            audit.health_check("network", "healthy", 1.0, None)
    finally:
        audit.close()
    assert audit_file.read_text().count("HEALTH_CHECK") == 5


@pytest.mark.unit
def test_health_check_every_must_be_a_positive_count(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "audit: {health_check_every: 0}\n"
        "components: {network: {probes: [{type: tcp, targets: ['127.0.0.1:5432']}]}}\n",
    )
    with pytest.raises(ConfigError, match=r"audit\.health_check_every: Input should be greater"):
        load_config(MonitorConfig, path, environ={})


def test_rotation_of_the_file_named_by_audit_log_file(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.log"
    path = config_file(
        tmp_path,
        "audit: {max_bytes: 2KiB, backup_count: 2}\n"
        "components: {network: {probes: [{type: tcp, targets: ['127.0.0.1:5432']}]}}\n",
    )
    config = load_config(MonitorConfig, path, environ={"AUDIT_LOG_FILE": str(audit_file)})
    assert config.audit.max_bytes == 2048
    audit = AuditLog(config.audit, stream=False)
    try:
        for i in range(200):
            audit.health_check("network", "healthy", float(i), None)
    finally:
        audit.close()
    files = sorted(p.name for p in tmp_path.glob("audit.log*"))
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    for name in files:
        size = (tmp_path / name).stat().st_size
        assert 0 < size <= 2048, (name, size)
        for line in (tmp_path / name).read_text().splitlines():
            assert LINE.match(line), line
    # The newest event is in the current file.
    assert '"latency_ms": 199.0' in audit_file.read_text()


@pytest.mark.unit
def test_other_events_in_the_seed_format(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.log"
    audit = AuditLog(AuditConfig(file=audit_file), stream=False)
    try:
        audit.alert_triggered("database", "critical")
        audit.recovery_attempt({"attempt_id": "network_123", "success": True, "duration_ms": 300.5})
        audit.recovery_attempt(
            {"attempt_id": "queue_7", "success": False, "error_message": "broker down"}
        )
    finally:
        audit.close()
    lines = [LINE.match(line) for line in audit_file.read_text().splitlines()]
    assert all(lines)
    alert, ok, failed = (m for m in lines if m)
    assert (alert["level"], alert["event"], alert["payload"]) == (
        "WARNING",
        "ALERT_TRIGGERED",
        "component=database, severity=CRITICAL",
    )
    assert (ok["level"], ok["event"]) == ("INFO", "RECOVERY_ATTEMPT")
    assert json.loads(ok["payload"]) == {
        "attempt_id": "network_123",
        "success": True,
        "duration_ms": 300.5,
    }
    assert failed["level"] == "ERROR"
    assert json.loads(failed["payload"])["error_message"] == "broker down"


@pytest.mark.unit
def test_audit_lines_do_not_reach_the_root_logger(tmp_path: Path) -> None:
    """The application's own logging config must not duplicate or drop audit lines."""

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    root = Collect()
    logging.getLogger().addHandler(root)
    audit = AuditLog(AuditConfig(file=tmp_path / "a.log"), stream=False)
    try:
        audit.health_check("network", "healthy", 1.0, None)
    finally:
        audit.close()
        logging.getLogger().removeHandler(root)
    assert not [m for m in root.messages if "HEALTH_CHECK" in m]
    assert "HEALTH_CHECK" in (tmp_path / "a.log").read_text()


@pytest.mark.unit
def test_a_lone_event_is_written_at_once_and_a_burst_in_full(tmp_path: Path) -> None:
    """The writer holds a burst back until it ends (at most a fraction of a second),
    never a lone event, and a burst comes out whole and in order without a close."""
    audit_file = tmp_path / "audit.log"
    audit = AuditLog(AuditConfig(file=audit_file), stream=False)
    try:
        audit.alert_triggered("database", "critical", alertname="Lone", fingerprint="f")
        wait_until_sync(
            lambda: "alertname=Lone" in audit_file.read_text(), timeout=1, message="lone line"
        )
        for i in range(2000):
            audit.alert_triggered("queue", "warning", alertname="Burst", fingerprint=f"f{i}")

        def burst() -> list[str]:
            return [line for line in audit_file.read_text().splitlines() if "Burst" in line]

        wait_until_sync(lambda: len(burst()) == 2000, timeout=5, message="the whole burst")
        assert [line.rsplit("=", 1)[1] for line in burst()] == [f"f{i}" for i in range(2000)]
    finally:
        audit.close()
