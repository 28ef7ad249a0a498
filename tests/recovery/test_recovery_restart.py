"""The real ``pipeline-monitor run`` process killed with SIGKILL mid-repair.

Run as a subprocess with a config file, a state directory and
PIPELINE_API_TOKEN, as an operator runs it. After the kill and a new start:

* the repair command it was running dies with it (nothing outlives a monitor);
* the history is intact and the cut-off attempt is marked ``interrupted``;
* the still-firing alert's repair resumes, and the interrupted attempt counts
  against ``max_attempts`` (so one more failure escalates);
* an alert whose repair succeeded before a restart is not repaired again when
  Alertmanager repeats it after the restart, although the component is broken
  again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from recovery.recovery_support import (
    PYTHON,
    MonitorProcess,
    attempts,
    audit_events,
    free_port,
    make_alert,
    query_db,
    wait_until,
)

pytestmark = pytest.mark.integration

# The repair of validation_service: note the run, then hang while the flag file exists.
SLOW = """
import os, sys, time
counter, flag, pids = sys.argv[1:4]
with open(pids, "a") as f:
    f.write(f"{os.getpid()}\\n")
with open(counter, "a") as f:
    f.write("run\\n")
if os.path.exists(flag):
    time.sleep(30)
"""
# The repair of storage: create the missing directory, and note the run.
MKDIR = """
import os, sys
os.makedirs(sys.argv[1], exist_ok=True)
with open(sys.argv[2], "a") as f:
    f.write("run\\n")
"""


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[MonitorProcess, dict[str, Path]]]:
    files = {
        name: tmp_path / name
        for name in ("slow.flag", "slow.runs", "slow.pids", "articles", "storage.runs")
    }
    state_dir = tmp_path / "state"
    config = {
        "check_interval": 1,
        "components": {
            "validation_service": {
                "probes": [
                    {"type": "http", "url": f"http://127.0.0.1:{free_port()}/", "timeout": 0.5}
                ]
            },
            "storage": {
                "probes": [
                    {
                        "type": "filesystem",
                        "path": str(files["articles"]),
                        "free_bytes_degraded": None,
                        "free_bytes_unhealthy": None,
                        "timeout": 0.5,
                    }
                ]
            },
        },
        "audit": {"file": str(state_dir / "audit.log")},
        "recovery": {
            "max_attempts": 2,
            "retry_delay": 0.5,
            "verify_timeout": 0.6,
            "verify_interval": 0.2,
            "rules": [
                {
                    "alertname": "PipelineComponentDown",
                    "component": "validation_service",
                    "actions": [
                        {
                            "type": "command",
                            "argv": [
                                PYTHON,
                                "-c",
                                SLOW,
                                *(str(files[n]) for n in ("slow.runs", "slow.flag", "slow.pids")),
                            ],
                            "timeout": 60,
                        }
                    ],
                },
                {
                    "alertname": "PipelineComponentDown",
                    "component": "storage",
                    "actions": [
                        {
                            "type": "command",
                            "argv": [
                                PYTHON,
                                "-c",
                                MKDIR,
                                str(files["articles"]),
                                str(files["storage.runs"]),
                            ],
                        }
                    ],
                },
            ],
        },
    }
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml.safe_dump(config))
    monitor = MonitorProcess(tmp_path, path, state_dir)
    yield monitor, files
    await monitor.stop()
    # Should a command outlive its monitor after all (the test fails then), end
    # it by the pid it wrote, so that nothing outlives the test.
    if files["slow.pids"].exists():
        for pid in files["slow.pids"].read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it waits only for its parent (gone) to be reaped.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def _db(monitor: MonitorProcess, sql: str, *args: object) -> list[tuple]:
    return await asyncio.to_thread(query_db, monitor.state_dir / "history.sqlite3", sql, *args)


async def test_sigkill_mid_repair_then_restart(setup):
    monitor, files = setup
    await monitor.start()
    await wait_until(
        lambda: _component_is(monitor, "validation_service", "unhealthy"),
        message="validation_service unhealthy",
    )

    # 1. A repair that hangs, and a kill in the middle of it.
    files["slow.flag"].touch()
    stuck = make_alert("validation_service")
    await monitor.post_alerts(stuck)
    await wait_until(lambda: _runs(files["slow.runs"]) == 1, message="the repair command runs")
    rows = await _db(monitor, "SELECT status, trigger FROM attempts")
    assert rows == [("running", "alert")]
    (pid,) = [int(p) for p in files["slow.pids"].read_text().split()]
    await monitor.kill()
    # The command runs in a process group of its own; the monitor's watcher ends
    # it when the monitor goes, however it goes.
    await wait_until(lambda: not _alive(pid), timeout=10, message="the command ends")

    events_before = await _db(monitor, "SELECT id, kind FROM events ORDER BY id")
    assert "alert" in {kind for _, kind in events_before}
    files["slow.flag"].unlink()  # from now on the command fails fast (it fixes nothing)

    # 2. The restart: the cut-off attempt is interrupted, the repair resumes,
    #    fails once more, and with max_attempts 2 that escalates.
    await monitor.start()

    async def escalated() -> bool:
        status = await monitor.get("/api/pipeline/status")
        return bool(status["component_details"]["validation_service"]["manual_intervention"])

    await wait_until(escalated, timeout=20, message="escalation after the resumed repair")
    rows = await asyncio.to_thread(
        attempts, monitor.state_dir / "history.sqlite3", "validation_service"
    )
    assert [(r["status"], r["trigger"]) for r in rows] == [
        ("interrupted", "alert"),
        ("failure", "resume"),
    ]
    assert rows[0]["error"] == "the monitor stopped during this repair"
    assert _runs(files["slow.runs"]) == 2

    history = (await monitor.get("/api/pipeline/history?limit=1000"))["events"]
    ids = {e["id"] for e in history}
    assert {i for i, _ in events_before} <= ids  # nothing lost
    interrupted = [
        e for e in history if e["type"] == "recovery_attempt" and e["status"] == "interrupted"
    ]
    assert [e["attempt_id"] for e in interrupted] == [rows[0]["attempt_id"]]
    assert any(e["type"] == "monitor_stopped" and e["clean"] is False for e in history)
    assert any(e["type"] == "escalation" for e in history)
    audit = monitor.state_dir / "audit.log"
    lines = await asyncio.to_thread(audit_events, audit, "RECOVERY_ATTEMPT")
    assert any(
        line["attempt_id"] == rows[0]["attempt_id"] and line["status"] == "interrupted"
        for line in lines
    )
    metrics = await monitor.get("/api/pipeline/metrics")
    assert metrics["recovery_stats"]["interrupted"] == 1

    # 3. A repair that succeeds; a kill; the component breaks again; Alertmanager
    #    repeats the same alert after the restart: no second repair.
    fixed = make_alert("storage")
    await monitor.post_alerts(fixed)
    await wait_until(
        lambda: _component_is(monitor, "storage", "healthy"), message="storage repaired"
    )
    await wait_until(
        lambda: _alert_repair(monitor, fixed, "succeeded"), message="the alert is repaired"
    )
    assert _runs(files["storage.runs"]) == 1
    await monitor.kill()
    files["articles"].rmdir()

    await monitor.start()
    await wait_until(
        lambda: _component_is(monitor, "storage", "unhealthy"), message="storage broken again"
    )
    answer = await monitor.post_alerts(fixed)
    assert (answer["new"], answer["duplicates"], answer["repairs_queued"]) == (0, 1, 0)
    await asyncio.sleep(1.5)  # a repair would have run by now
    assert _runs(files["storage.runs"]) == 1
    assert not files["articles"].exists()
    storage_rows = await asyncio.to_thread(
        attempts, monitor.state_dir / "history.sqlite3", "storage"
    )
    assert [r["status"] for r in storage_rows] == ["success"]
    # The escalated validation_service is still in people's hands after a restart.
    status = await monitor.get("/api/pipeline/status")
    assert status["component_details"]["validation_service"]["manual_intervention"] is True
    assert json.dumps(status)  # the whole status still serialises after three starts


async def _component_is(monitor: MonitorProcess, name: str, status: str) -> bool:
    return await monitor.component(name) == status


async def _alert_repair(monitor: MonitorProcess, alert: dict, repair: str) -> bool:
    key = f"{alert['fingerprint']}@{alert['startsAt']}"
    rows = await _db(monitor, "SELECT repair FROM alerts WHERE key = ?", key)
    return rows == [(repair,)]
