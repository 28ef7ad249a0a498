"""The seed's Python API, used as the seed's README shows it, from plain
synchronous code, against real services: PostgreSQL, a TCP target and the
stand-in validation service process (which the test kills and starts again).
"""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlsplit

import pytest

from exporter.model import Status
from pipeline_monitor import PipelineComponent, PipelineHealthMonitor
from recovery.recovery_support import StandIn, build_config, wait_until_sync

pytestmark = pytest.mark.integration


def test_the_seed_python_api_on_real_services(tmp_path, pg_dsn, standin: StandIn):
    parts = urlsplit(pg_dsn)
    config = build_config(
        tmp_path / "state",
        {
            "network": {
                "probes": [
                    {"type": "tcp", "targets": [f"{parts.hostname}:{parts.port}"], "timeout": 0.4}
                ]
            },
            "validation_service": {
                "probes": [{"type": "http", "url": standin.url, "timeout": 0.4}]
            },
            "database": {"probes": [{"type": "postgres", "dsn": pg_dsn, "timeout": 0.4}]},
        },
        check_interval=0.5,
    )
    calls: list[tuple[object, Status]] = []
    lock = threading.Lock()

    def alert(component: object, status: Status) -> None:
        with lock:
            calls.append((component, status))

    monitor = PipelineHealthMonitor(check_interval=0.5, alert_callback=alert, config=config)
    assert monitor.check_interval == 0.5
    monitor.start_monitoring()
    try:
        status = monitor.get_pipeline_status()
        assert status.overall_status.value == "healthy"
        assert status.components == {
            "network": Status.HEALTHY,
            "validation_service": Status.HEALTHY,
            "database": Status.HEALTHY,
        }
        assert status.can_publish is True
        # Uptime comes from history, written off the loop: there within a moment.
        uptime = wait_until_sync(
            lambda: monitor.get_pipeline_status().uptime_percentage, message="uptime measured"
        )
        assert uptime == 100.0
        assert "OPERATIONAL" in monitor.get_editor_message()
        # Every component's first check reported its transition from unknown.
        assert {(c, s) for c, s in calls} == {
            (PipelineComponent.NETWORK, Status.HEALTHY),
            (PipelineComponent.VALIDATION_SERVICE, Status.HEALTHY),
            (PipelineComponent.DATABASE, Status.HEALTHY),
        }

        attempt = asyncio.run(monitor.attempt_recovery(PipelineComponent.NETWORK))
        assert attempt.success is True
        assert attempt.attempt_id.startswith("network_")
        assert attempt.error_message is None
        assert attempt.actions[0]["action"] == "reconnect"

        standin.kill()
        wait_until_sync(
            lambda: (PipelineComponent.VALIDATION_SERVICE, Status.UNHEALTHY) in calls,
            message="alert_callback told of the crash",
        )
        status = monitor.get_pipeline_status()
        assert status.overall_status.value == "unhealthy"
        assert status.components["validation_service"] is Status.UNHEALTHY
        assert status.is_auto_recoverable is False  # the seed: restart is not automatic
        assert "DOWN" in monitor.get_editor_message()

        # No automatic repair for the validation service: the attempt fails and
        # tells the seed's manual steps.
        attempt = asyncio.run(monitor.attempt_recovery(PipelineComponent.VALIDATION_SERVICE))
        assert attempt.success is False
        assert attempt.attempt_id.startswith("validation_service_")
        assert "SSH to the validation server" in (attempt.error_message or "")

        standin.start()
        wait_until_sync(
            lambda: calls[-1] == (PipelineComponent.VALIDATION_SERVICE, Status.HEALTHY),
            message="alert_callback told of the recovery",
        )
        assert monitor.get_pipeline_status().overall_status.value == "healthy"
        with pytest.raises(ValueError, match="unknown component 'printer'"):
            asyncio.run(monitor.attempt_recovery("printer"))
    finally:
        monitor.stop_monitoring()
    with pytest.raises(RuntimeError, match="start_monitoring"):
        monitor.get_pipeline_status()


@pytest.mark.unit
def test_a_short_check_interval_shortens_the_default_probe_timeouts(tmp_path) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text(
        f"state_dir: {tmp_path}\n"
        "components:\n"
        "  network:\n"
        "    probes: [{type: tcp, targets: ['127.0.0.1:9']}]\n",
        encoding="utf-8",
    )
    monitor = PipelineHealthMonitor(check_interval=2, config=config)
    assert monitor.check_interval == 2
    (probe,) = monitor.config.components["network"].probes
    assert probe.timeout == pytest.approx(1.6)
    with pytest.raises(ValueError, match="check_interval must be > 0"):
        PipelineHealthMonitor(check_interval=0, config=config)
