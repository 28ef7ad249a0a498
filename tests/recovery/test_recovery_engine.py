"""The engine's promises around repeated failures and repeated notifications.

* After ``max_attempts`` failed repairs the component is handed to people.
* Alertmanager repeating an alert, or two Alertmanagers sending it at once,
  runs one repair.
* A resolved alert cancels the pending retry.

The repair is a real ``command`` that appends a line to a file (so the test
counts runs by their side effect, not by what the engine says) and does not
fix anything: the validation service's port has nothing listening on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from exporter.config import DEFAULT_MANUAL_STEPS
from recovery.recovery_support import (
    PYTHON,
    build_config,
    make_alert,
    metric_value,
    payload,
    query_db,
    resolved,
    rule,
    wait_until,
)

pytestmark = pytest.mark.integration

APPEND = "import os, sys; open(sys.argv[1], 'a').write(os.environ['ALERT_LABEL_ALERTNAME'] + '\\n')"


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _config(state_dir: Path, port: int, counter: Path, **recovery: float):
    return build_config(
        state_dir,
        {
            "validation_service": {
                "probes": [
                    {"type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout": 0.5}
                ]
            }
        },
        [
            rule(
                "validation_service",
                {"type": "command", "argv": [PYTHON, "-c", APPEND, str(counter)]},
            )
        ],
        recovery={"verify_timeout": 0.6, **recovery},
    )


async def _unhealthy(app) -> None:
    async def down() -> bool:
        return await app.component_status("validation_service") == "unhealthy"

    await wait_until(down, message="validation_service unhealthy")


async def _repair_state(app, alert: dict) -> str:
    key = f"{alert['fingerprint']}@{alert['startsAt']}"
    rows = await asyncio.to_thread(
        query_db, app.db_path, "SELECT repair FROM alerts WHERE key = ?", key
    )
    return rows[0][0] if rows else ""


async def _ended(app, count: int) -> list[dict]:
    """Wait until ``count`` attempts have ended; return them all."""

    async def ended() -> list[dict] | None:
        rows = await app.attempts()
        done = [r for r in rows if r["status"] != "running"]
        return rows if len(done) >= count else None

    return await wait_until(ended, timeout=20, message=f"{count} attempt(s) ended")


async def test_repeated_failures_escalate_to_people(app_factory, state_dir, tmp_path, unused_port):
    counter = tmp_path / "runs.log"
    config = _config(state_dir, unused_port, counter, max_attempts=2, retry_delay=0.3)
    app = await app_factory(config)
    await _unhealthy(app)
    assert (
        metric_value(
            await app.metrics(),
            "pipeline_recovery_escalations_total",
            component="validation_service",
        )
        == 0.0
    )

    await app.post_alerts(make_alert("validation_service"))

    async def escalated() -> bool:
        details = (await app.status())["component_details"]["validation_service"]
        return bool(details["manual_intervention"])

    await wait_until(escalated, timeout=20, message="the component is handed to people")
    rows = await app.attempts()
    assert [r["status"] for r in rows] == ["failure", "failure"]
    assert [r["trigger"] for r in rows] == ["alert", "retry"]
    assert _runs(counter) == 2

    status = await app.status()
    detail = status["component_details"]["validation_service"]["manual_intervention_detail"]
    steps = DEFAULT_MANUAL_STEPS["validation_service"]
    assert detail["manual_steps"] == steps
    assert detail["attempt_id"] == rows[-1]["attempt_id"]
    assert status["is_auto_recoverable"] is False
    assert any("needs an engineer" in line for line in status["suggested_actions"])

    (line,) = await wait_until(lambda: app.audit("ESCALATION"), message="ESCALATION logged")
    assert line["component"] == "validation_service"
    assert line["manual_steps"] == steps
    assert line["attempt_id"] == rows[-1]["attempt_id"]
    assert "ESCALATION" in app.audit_path.read_text()
    assert any(e["type"] == "escalation" for e in await app.history())

    text = await app.metrics()
    assert (
        metric_value(text, "pipeline_recovery_escalations_total", component="validation_service")
        == 1.0
    )
    assert (
        metric_value(text, "pipeline_component_manual_intervention", component="validation_service")
        == 1.0
    )
    assert (
        metric_value(
            text,
            "pipeline_recovery_attempts_total",
            component="validation_service",
            action="command",
            result="failure",
        )
        == 2.0
    )

    editor = await app.get_json("/api/pipeline/editor-message")
    assert editor["can_publish"] is False
    assert editor["state"] == "down"
    assert "Engineers were notified at" in editor["message"]
    assert "are working on it" in editor["message"]
    (component,) = editor["components"]
    assert component["words"] == "Not working: engineers are working on it"
    assert component["manual_intervention"] is True

    # Escalated: no further repair, although the alert still fires.
    await asyncio.sleep(1.0)
    assert _runs(counter) == 2
    assert len(await app.attempts()) == 2


async def test_duplicate_notifications_run_one_repair(
    app_factory, state_dir, tmp_path, unused_port
):
    counter = tmp_path / "runs.log"
    # A long retry delay: within the test, every run is a first repair of an alert.
    config = _config(state_dir, unused_port, counter, max_attempts=5, retry_delay=60)
    app = await app_factory(config)
    await _unhealthy(app)

    # Alertmanager repeats a notification (repeat_interval, or a group update).
    first = make_alert("validation_service")
    one = await app.post_alerts(first)
    two = await app.post_alerts(first)
    assert (one["new"], one["duplicates"], one["repairs_queued"]) == (1, 0, 1)
    assert (two["new"], two["duplicates"], two["repairs_queued"]) == (0, 1, 0)
    await _ended(app, 1)
    await asyncio.sleep(0.5)  # a second repair would start right after the first
    assert _runs(counter) == 1
    assert len(await app.attempts()) == 1

    # Both Alertmanagers of an HA pair send the same alert at the same moment.
    second = make_alert("validation_service", starts_at=None)
    body = payload(second)
    async with aiohttp.ClientSession() as one_am, aiohttp.ClientSession() as other_am:
        answers = await asyncio.gather(_post(one_am, app, body), _post(other_am, app, body))
    assert sorted((a["new"], a["duplicates"]) for a in answers) == [(0, 1), (1, 0)]
    assert sum(a["repairs_queued"] for a in answers) == 1
    await _ended(app, 2)
    await asyncio.sleep(0.5)
    assert _runs(counter) == 2
    rows = await app.attempts()
    assert len(rows) == 2
    assert rows[0]["alert_key"] != rows[1]["alert_key"]

    counts = await asyncio.to_thread(
        query_db, app.db_path, "SELECT notifications FROM alerts ORDER BY first_seen"
    )
    assert counts == [(2,), (2,)]
    text = await app.metrics()
    assert metric_value(text, "pipeline_alerts_received_total", status="firing") == 4.0


async def test_a_resolved_alert_cancels_the_pending_retry(
    app_factory, state_dir, tmp_path, unused_port
):
    counter = tmp_path / "runs.log"
    config = _config(state_dir, unused_port, counter, max_attempts=5, retry_delay=1.5)
    app = await app_factory(config)
    await _unhealthy(app)

    alert = make_alert("validation_service")
    await app.post_alerts(alert)
    await wait_until(lambda: _is_repair(app, alert, "retry_pending"), message="a retry is pending")
    assert _runs(counter) == 1

    answer = await app.post_alerts(resolved(alert))
    assert (answer["resolved"], answer["new"], answer["repairs_queued"]) == (1, 0, 0)
    await wait_until(lambda: _is_repair(app, alert, "resolved"), message="retry cancelled")
    await asyncio.sleep(2.0)  # past the retry's time
    assert _runs(counter) == 1
    assert len(await app.attempts()) == 1

    (event,) = [
        e for e in await app.history() if e["type"] == "alert" and e["status"] == "resolved"
    ]
    assert event["retry_cancelled"] is True
    assert event["fingerprint"] == alert["fingerprint"]
    assert "ALERT_RESOLVED: component=validation_service" in app.audit_path.read_text()


async def _is_repair(app, alert: dict, state: str) -> bool:
    return await _repair_state(app, alert) == state


async def _post(session: aiohttp.ClientSession, app, body: dict) -> dict:
    async with session.post(
        f"{app.url}/api/alertmanager/webhook", json=body, headers=app.auth()
    ) as response:
        assert response.status == 200
        return dict(await response.json())


async def test_two_alerts_of_one_component_escalate_once(
    app_factory, state_dir, tmp_path, unused_port
):
    """Alerts queue behind one lock; the one that reaches the limit hands over, once."""
    counter = tmp_path / "runs.log"
    config = _config(state_dir, unused_port, counter, max_attempts=2, retry_delay=0.3)
    app = await app_factory(config)
    await _unhealthy(app)

    await app.post_alerts(
        make_alert("validation_service"),
        make_alert("validation_service"),
        make_alert("validation_service"),
    )

    async def escalated() -> bool:
        details = (await app.status())["component_details"]["validation_service"]
        return bool(details["manual_intervention"])

    await wait_until(escalated, timeout=20, message="the component is handed to people")
    await asyncio.sleep(1.0)  # room for a second, wrong escalation or repair to show
    assert _runs(counter) == 2
    assert len(await app.audit("ESCALATION")) == 1
    metrics = await app.metrics()
    assert (
        metric_value(metrics, "pipeline_recovery_escalations_total", component="validation_service")
        == 1.0
    )


async def test_a_component_without_repair_escalates_with_an_attempt_to_quote(
    app_factory, state_dir, unused_port
):
    """The seed's validation service: not auto-recoverable. People get the manual
    steps and an attempt_id to quote, at once."""
    config = build_config(
        state_dir,
        {
            "validation_service": {
                "probes": [
                    {"type": "http", "url": f"http://127.0.0.1:{unused_port}/h", "timeout": 0.5}
                ]
            }
        },
        [rule("validation_service")],
    )
    app = await app_factory(config)
    await _unhealthy(app)
    await app.post_alerts(make_alert("validation_service"))

    (line,) = await wait_until(lambda: app.audit("ESCALATION"), message="an escalation")
    (attempt,) = await app.attempts()
    assert attempt["status"] == "failure"
    assert "no automatic repair is configured" in attempt["error"]
    assert line["attempt_id"] == attempt["attempt_id"]
    assert line["manual_steps"] == DEFAULT_MANUAL_STEPS["validation_service"]
    (logged,) = await app.audit("RECOVERY_ATTEMPT")
    assert logged["attempt_id"] == attempt["attempt_id"] and logged["success"] is False


async def test_an_action_that_cannot_succeed_escalates_without_retrying(
    app_factory, state_dir, unused_port
):
    """A permanent failure (the program does not exist) is not retried."""
    config = build_config(
        state_dir,
        {
            "validation_service": {
                "probes": [
                    {"type": "http", "url": f"http://127.0.0.1:{unused_port}/h", "timeout": 0.5}
                ]
            }
        },
        [rule("validation_service", {"type": "command", "argv": ["/nonexistent/restart"]})],
        recovery={"max_attempts": 5, "retry_delay": 0.2},
    )
    app = await app_factory(config)
    await _unhealthy(app)
    await app.post_alerts(make_alert("validation_service"))

    (line,) = await wait_until(lambda: app.audit("ESCALATION"), message="an escalation")
    assert line["reason"].startswith("the repair cannot succeed: cannot start /nonexistent")
    await asyncio.sleep(0.6)  # longer than retry_delay: no retry comes
    assert len(await app.attempts()) == 1


# Appends "start|end <component> <instance> <time>" around a 0.3 s pause.
SPAN = (
    "import os, sys, time\n"
    "who = os.environ['ALERT_LABEL_COMPONENT'] + ' ' + os.environ['ALERT_LABEL_INSTANCE']\n"
    "open(sys.argv[1], 'a').write(f'start {who} {time.time()}\\n')\n"
    "time.sleep(0.3)\n"
    "open(sys.argv[1], 'a').write(f'end {who} {time.time()}\\n')\n"
)


async def test_repairs_of_a_component_run_one_at_a_time_in_arrival_order(
    app_factory, state_dir, tmp_path, unused_port
):
    spans = tmp_path / "spans.log"
    down = {"probes": [{"type": "tcp", "targets": [f"127.0.0.1:{unused_port}"], "timeout": 0.5}]}
    action = {"type": "command", "argv": [PYTHON, "-c", SPAN, str(spans)], "verify": False}
    config = build_config(
        state_dir,
        {"database": down, "storage": down},
        [rule("database", action), rule("storage", action)],
        recovery={"verify_timeout": 0.05, "max_attempts": 100, "retry_delay": 3600},
    )
    app = await app_factory(config)
    database = [make_alert("database", instance=f"db-{i}") for i in range(4)]
    storage = make_alert("storage", instance="s3-0")
    # One notification, then a second one while the first repairs run.
    assert (await app.post_alerts(*database[:3], storage))["repairs_queued"] == 4
    assert (await app.post_alerts(database[3]))["repairs_queued"] == 1
    await _ended(app, 5)

    runs: dict[str, list[tuple[str, float, float]]] = {}
    started: dict[str, float] = {}
    for line in spans.read_text().splitlines():
        edge, component, instance, moment = line.split()
        if edge == "start":
            started[instance] = float(moment)
        else:
            runs.setdefault(component, []).append((instance, started[instance], float(moment)))
    # In the order the alerts came, each after the previous one ended.
    assert [instance for instance, _, _ in runs["database"]] == ["db-0", "db-1", "db-2", "db-3"]
    for (_, _, ended), (_, start, _) in zip(runs["database"], runs["database"][1:], strict=False):
        assert start >= ended
    # Another component's repair ran beside them, not after them.
    ((_, storage_start, storage_end),) = runs["storage"]
    assert storage_start < runs["database"][0][2] and storage_end > runs["database"][0][1]
    attempts = await app.attempts()
    assert sorted(a["component"] for a in attempts) == ["database"] * 4 + ["storage"]
