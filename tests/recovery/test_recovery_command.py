"""A ``command`` action restarts a validation service that crashed.

The stand-in validation service is a real process; the test kills it with
SIGKILL, Alertmanager's notification arrives on the webhook, the configured
command starts the service again, and the http probe proves it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from recovery.recovery_support import (
    StandIn,
    build_config,
    make_alert,
    metric_value,
    rule,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_command_restarts_a_killed_validation_service(
    app_factory, state_dir, standin: StandIn
):
    config = build_config(
        state_dir,
        {
            "validation_service": {
                "probes": [{"type": "http", "url": standin.url, "timeout": 0.5}],
            }
        },
        [rule("validation_service", {"type": "command", "argv": standin.argv(detach=True)})],
    )
    app = await app_factory(config)
    await wait_until(
        lambda: _is(app, "validation_service", "healthy"), message="validation_service healthy"
    )
    before = metric_value(
        await app.metrics(),
        "pipeline_recovery_attempts_total",
        component="validation_service",
        result="success",
    )
    assert before in (None, 0.0)

    killed = await asyncio.to_thread(standin.kill)
    await wait_until(
        lambda: _is(app, "validation_service", "unhealthy"), message="the crash is seen"
    )

    answer = await app.post_alerts(make_alert("validation_service"))
    assert answer == {
        "status": "accepted",
        "received": 1,
        "new": 1,
        "duplicates": 0,
        "resolved": 0,
        "repairs_queued": 1,
    }

    events = await wait_until(
        lambda: _attempt_events(app), timeout=20, message="the repair attempt is in history"
    )
    (event,) = events
    assert event["component"] == "validation_service"
    assert event["status"] == "success", event
    assert event["success"] is True
    assert event["trigger"] == "alert"
    assert event["alertname"] == "PipelineComponentDown"
    assert [a["action"] for a in event["actions"]] == ["command"]
    assert event["actions"][0]["verified"] is True
    assert "answers on port" in event["actions"][0]["output"]
    # What a repair printed is for engineers: not shown to readers without the token.
    (anonymous,) = [e for e in await app.history(anonymous=True) if e["type"] == "recovery_attempt"]
    assert anonymous["attempt_id"] == event["attempt_id"]
    assert "output" not in anonymous["actions"][0]
    status = await app.status()
    assert (
        "output"
        not in status["component_details"]["validation_service"]["last_attempt"]["actions"][0]
    )

    # The service really runs again: a new process, answering the probe.
    assert standin.pid is not None and standin.pid != killed
    assert standin.starts == 2
    assert await app.component_status("validation_service") == "healthy"

    (row,) = await app.attempts()
    assert row["attempt_id"] == event["attempt_id"]
    assert row["status"] == "success"
    assert row["actions"][0]["result"] == "success"
    assert row["alert_key"] is not None

    lines = await wait_until(
        lambda: app.audit("RECOVERY_ATTEMPT"), message="the audit log has the attempt"
    )
    (line,) = lines
    assert line["attempt_id"] == event["attempt_id"]
    assert line["success"] is True
    assert line["component"] == "validation_service"
    assert "ALERT_TRIGGERED: component=validation_service, severity=CRITICAL" in (
        app.audit_path.read_text()
    )

    after = metric_value(
        await app.metrics(),
        "pipeline_recovery_attempts_total",
        component="validation_service",
        action="command",
        result="success",
    )
    assert after == 1.0
    alerts = metric_value(await app.metrics(), "pipeline_alerts_received_total", status="firing")
    assert alerts == 1.0


async def _is(app, component: str, status: str) -> bool:
    return await app.component_status(component) == status


async def _attempt_events(app) -> list[dict]:
    return [e for e in await app.history() if e["type"] == "recovery_attempt"]


TALKATIVE = """
import os, sys, time
print("label:", os.environ["ALERT_LABEL_DESK"], "component:", os.environ["PIPELINE_COMPONENT"])
print("dsn:", os.environ["LEAK"])
print("x" * 20000)
sys.stdout.flush()
if sys.argv[1] == "hang":
    with open(sys.argv[2], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)
sys.exit(3)
"""


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_command_output_is_kept_truncated_and_scrubbed(
    app_factory, state_dir, tmp_path, unused_port, mode
):
    password = "s3cret-Pa55word"
    dsn = f"postgresql://monitor:{password}@127.0.0.1:{unused_port}/articles"
    pidfile = tmp_path / "hanging.pid"
    config = build_config(
        state_dir,
        {"database": {"probes": [{"type": "postgres", "dsn": dsn, "timeout": 0.5}]}},
        [
            rule(
                "database",
                {
                    "type": "command",
                    "argv": [sys.executable, "-c", TALKATIVE, mode, str(pidfile)],
                    "env": {"LEAK": dsn},
                    "timeout": 1.0,
                },
            )
        ],
        recovery={"max_attempts": 1, "verify_timeout": 0.3},
    )
    app = await app_factory(config)
    await wait_until(lambda: _is(app, "database", "unhealthy"), message="database unhealthy")

    await app.post_alerts(make_alert("database", desk="sports"))
    (event,) = await wait_until(lambda: _attempt_events(app), timeout=20, message="the attempt")
    assert event["status"] == "failure"
    (action,) = event["actions"]
    output = action["output"]
    assert "label: sports component: database" in output
    assert password not in output and "dsn: ***" in output
    assert len(output) < 4200 and "characters cut" in output
    if mode == "hang":
        assert action["error"] == f"{sys.executable} did not finish within 1s and was killed"
        # The whole process group went: nothing of the command is left running.
        pid = int(pidfile.read_text())
        await wait_until(lambda: not _alive(pid), message="the hung command is killed")
    else:
        assert action["error"] == f"{sys.executable} exited with status 3"
    assert password not in (await app.metrics())
    assert password not in app.audit_path.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not alive
        return handle.read().split(") ", 1)[1][0] != "Z"


_WATCHER_PROBE = """
import asyncio, sys, threading
from recovery_webhook.app import watch_children_with_pidfds

async def main():
    assert watch_children_with_pidfds()
    before = threading.active_count()
    child = await asyncio.create_subprocess_exec("true")
    threads = threading.active_count() - before
    assert await child.wait() == 0
    if sys.version_info < (3, 12):
        print(type(asyncio.get_child_watcher()).__name__, threads)
    else:
        print("PidfdChildWatcher", threads)

asyncio.run(main())
"""


def test_the_service_waits_for_repair_commands_without_a_thread_each() -> None:
    # In a process of its own: the child watcher is the process's, not the loop's.
    result = subprocess.run(
        [sys.executable, "-c", _WATCHER_PROBE], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["PidfdChildWatcher", "0"]
