"""The global switches in front of every action: ``dry_run`` and ``enabled``.

The storage directory is missing (a real fault the repair could fix); the repair
is a command that would create it and leave a side-effect file. With
``dry_run`` it is logged and never run; with ``enabled: false`` the alert is
recorded and nothing runs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from recovery.recovery_support import (
    PYTHON,
    build_config,
    make_alert,
    metric_value,
    query_db,
    wait_until,
)

pytestmark = pytest.mark.integration

REPAIR = """
import os, sys
os.makedirs(sys.argv[1], exist_ok=True)
open(sys.argv[2], "a").write("ran\\n")
"""


def _config(state_dir: Path, tmp_path: Path, **recovery):
    articles = tmp_path / "articles"
    return build_config(
        state_dir,
        {
            "storage": {
                "probes": [
                    {
                        "type": "filesystem",
                        "path": str(articles),
                        "free_bytes_degraded": None,
                        "free_bytes_unhealthy": None,
                        "timeout": 0.5,
                    }
                ]
            }
        },
        [
            {
                "alertname": "PipelineComponentDown",
                "component": "storage",
                "actions": [
                    {
                        "type": "command",
                        "name": "recreate-articles-dir",
                        "argv": [PYTHON, "-c", REPAIR, str(articles), str(tmp_path / "ran")],
                    }
                ],
            }
        ],
        recovery=recovery,
    )


async def _unhealthy(app) -> None:
    async def down() -> bool:
        return await app.component_status("storage") == "unhealthy"

    await wait_until(down, message="storage unhealthy")


async def test_dry_run_logs_what_would_run_and_runs_nothing(
    app_factory, state_dir, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="recovery_webhook.engine")
    app = await app_factory(_config(state_dir, tmp_path, dry_run=True))
    await _unhealthy(app)

    answer = await app.post_alerts(make_alert("storage"))
    assert answer["repairs_queued"] == 1
    rows = await wait_until(app.attempts, message="the dry-run attempt is recorded")
    (row,) = rows
    assert row["status"] == "dry_run"
    (planned,) = row["actions"]
    assert planned["action"] == "recreate-articles-dir"
    assert planned["result"] == "dry_run"
    assert planned["output"] == "dry run: not run"

    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "articles").exists()
    assert await app.component_status("storage") == "unhealthy"
    assert any(
        "DRY RUN: would repair storage with recreate-articles-dir" in r.getMessage()
        for r in caplog.records
    )
    (line,) = await wait_until(lambda: app.audit("RECOVERY_ATTEMPT"), message="audited")
    assert line["status"] == "dry_run"
    assert line["success"] is False
    assert line["actions"] == ["recreate-articles-dir"]
    text = await app.metrics()
    labels = {"component": "storage", "action": "recreate-articles-dir"}
    assert metric_value(text, "pipeline_recovery_attempts_total", result="dry_run", **labels) == 1
    assert (
        metric_value(text, "pipeline_recovery_attempts_total", result="success", **labels) is None
    )
    metrics = await app.get_json("/api/pipeline/metrics")
    assert metrics["recovery_stats"]["dry_runs"] == 1
    assert metrics["recovery_stats"]["successful_recoveries"] == 0
    # A dry run is not a failed repair: no retry, no escalation.
    await asyncio.sleep(1.0)
    assert len(await app.attempts()) == 1
    assert (await app.status())["component_details"]["storage"]["manual_intervention"] is False


async def test_recovery_disabled_records_the_alert_and_runs_nothing(
    app_factory, state_dir, tmp_path
):
    app = await app_factory(_config(state_dir, tmp_path, enabled=False))
    await _unhealthy(app)

    alert = make_alert("storage")
    answer = await app.post_alerts(alert)
    assert (answer["new"], answer["repairs_queued"]) == (1, 0)
    rows = await asyncio.to_thread(
        query_db, app.db_path, "SELECT fingerprint, status, repair FROM alerts"
    )
    assert rows == [(alert["fingerprint"], "firing", "disabled")]
    (event,) = [e for e in await app.history() if e["type"] == "alert"]
    assert event["repair"] == "disabled"
    assert "ALERT_TRIGGERED: component=storage" in app.audit_path.read_text()

    await asyncio.sleep(1.0)  # time enough for a repair to have started
    assert await app.attempts() == []
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "articles").exists()
    assert (
        metric_value(await app.metrics(), "pipeline_recovery_attempts_total", component="storage")
        is None
    )
