"""The seed's three scenarios, and a repeated notification, through the whole loop.

probe -> /metrics -> Prometheus -> alert rule -> Alertmanager -> Slack and the
recovery webhook -> repair -> re-probe -> resolved. Nothing is faked but Slack:
the faults are a killed process and a refusing proxy, the repairs a restart
command and a restart hook. Each test owns its components (e2e_stack.COMPONENTS).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_stack import SLOW_REPAIR_SECONDS, Stack, wait_for

pytestmark = pytest.mark.e2e

# Fault to firing alert takes about 4 s on the fast profile (probe 0.5 s, scrape
# 1 s, evaluation 1 s, `for: 2s`); the deadlines leave room for a loaded runner.
DETECT = 30.0
REPAIR = 30.0
RUNBOOKS = "https://github.com/pipeline-recovery/pipeline-recovery/blob/main/docs/runbooks.md"


def test_failed_component_is_repaired_and_slack_hears_firing_then_resolved(stack: Stack) -> None:
    component = "preview_service"
    standin = stack.standins[component]
    explain = stack.explain(component)
    crashed_pid = standin.kill()

    firing = wait_for(
        lambda: stack.slack_messages("PipelineComponentDown", component, "firing"),
        DETECT,
        f"Slack hears that {component} is down",
        explain,
    )
    attempts = wait_for(
        lambda: [a for a in stack.attempts(component) if a["success"]],
        REPAIR,
        f"a successful repair of {component} in history",
        explain,
    )
    resolved = wait_for(
        lambda: stack.slack_messages("PipelineComponentDown", component, "resolved"),
        REPAIR,
        f"Slack hears that {component} is back",
        explain,
    )

    # Slack: firing, then resolved, each telling what broke, where, and what to read.
    first = firing[0]
    assert first["channel"] == "#publishing-alerts"
    assert first["title"] == f"[FIRING:1] PipelineComponentDown ({component})"
    assert first["color"] == "danger"
    assert f"Pipeline component {component} is down" in first["text"]
    assert f"*Component:* `{component}`" in first["text"]
    assert "*Repair:* automatic, by the monitor" in first["text"]
    assert first["title_link"] == f"{RUNBOOKS}#pipelinecomponentdown"
    last = resolved[-1]
    assert last["title"] == f"[RESOLVED] PipelineComponentDown ({component})"
    assert last["color"] == "good"
    assert f"*Component:* `{component}`" in last["text"]
    titles = [a["title"] for a in stack.slack_messages("PipelineComponentDown", component)]
    assert titles.index(first["title"]) < titles.index(last["title"]), titles

    # History: one attempt, triggered by the alert, whose restart was verified.
    (attempt,) = stack.attempts(component)
    assert attempt == attempts[0]
    assert attempt["alertname"] == "PipelineComponentDown"
    assert attempt["trigger"] == "alert"
    assert attempt["status"] == "success"
    assert [(a["action"], a["result"], a["verified"]) for a in attempt["actions"]] == [
        ("restart-preview", "success", True)
    ]
    # The webhook heard firing and resolved, and accepted both (the bearer token
    # came from Alertmanager's credentials file).
    told = stack.tap.about("PipelineComponentDown", component) if stack.tap else []
    assert [a["status"] for _, a in told][0] == "firing"
    assert "resolved" in [a["status"] for _, a in told]
    assert all(d.status == 200 for d, _ in told), [(d.status, d.answer) for d, _ in told]

    # /metrics: healthy again, and the repair counted.
    assert stack.metric("pipeline_component_up", component=component) == 1
    assert (
        stack.metric(
            "pipeline_recovery_attempts_total",
            component=component,
            action="restart-preview",
            result="success",
        )
        == 1
    )
    # Really restarted: another process answers on the port.
    assert standin.answers() and standin.pid != crashed_pid


def test_unrepairable_validation_service_escalates_to_people(stack: Stack) -> None:
    component = "validation_service"
    standin = stack.standins[component]
    explain = stack.explain(component)
    standin.kill()

    wait_for(
        lambda: stack.events("escalation", component),
        DETECT + REPAIR,
        f"{component} is handed to people",
        explain,
    )
    escalated = wait_for(
        lambda: stack.slack_messages("PipelineEscalated", component, "firing"),
        DETECT,
        "Slack hears about the escalation",
        explain,
    )

    # Two failed restarts (max_attempts), then people; no repair after that.
    attempts = stack.attempts(component)
    assert [a["status"] for a in attempts] == ["failure", "failure"], attempts
    assert [a["trigger"] for a in attempts] == ["alert", "retry"]
    for attempt in attempts:
        (action,) = attempt["actions"]
        assert action["action"] == "restart-validator"
        assert "exited with status 1" in action["error"]
        assert "Service restart failed" in action["output"]
    (escalation,) = stack.events("escalation", component)
    assert escalation["attempt_id"] == attempts[-1]["attempt_id"]
    assert "Restart the service manually" in escalation["manual_steps"]

    # Editors: don't publish, engineers were notified and are on it.
    editor = stack.get("/api/pipeline/editor-message")
    assert editor["can_publish"] is False
    assert editor["state"] == "down"
    # The wording is the editor module's; what it must say is fixed.
    assert re.search(r"Engineers were notified at \d\d:\d\d\b.*working on it", editor["message"]), (
        editor["message"]
    )
    (view,) = [c for c in editor["components"] if c["name"] == component]
    assert view["manual_intervention"] is True
    assert view["status"] == "unhealthy"
    assert "working on it" in view["words"], view

    # Slack: the critical alert for people, with what to do.
    message = escalated[0]
    assert message["title"] == f"[FIRING:1] PipelineEscalated ({component})"
    assert message["color"] == "danger"
    assert "*Severity:* critical" in message["text"]
    assert f"{component} needs a person" in message["text"]
    assert "*Repair:* by people" in message["text"]
    assert message["title_link"] == f"{RUNBOOKS}#pipelineescalated"
    assert stack.metric("pipeline_recovery_escalations_total", component=component) == 1
    assert stack.metric("pipeline_component_manual_intervention", component=component) == 1
    assert len(stack.attempts(component)) == 2

    # A person restarts the service: the hand-over ends and the alerts resolve.
    standin.start()
    wait_for(
        lambda: stack.slack_messages("PipelineEscalated", component, "resolved"),
        DETECT,
        "the escalation resolves once the service is back",
        explain,
    )
    assert stack.metric("pipeline_component_manual_intervention", component=component) == 0
    assert stack.events("manual_intervention_cleared", component)
    assert len(stack.attempts(component)) == 2


def test_database_and_queue_fail_together_and_each_is_repaired_once(stack: Stack) -> None:
    components = ("database", "queue")
    for name in components:
        stack.proxies[name].refuse()

    def told(name: str) -> list[tuple[Any, dict[str, Any]]]:
        return stack.tap.about("PipelineComponentDown", name) if stack.tap else []

    for name in components:
        wait_for(
            lambda name=name: stack.slack_messages("PipelineComponentDown", name, "resolved"),
            DETECT + REPAIR,
            f"{name} is down, repaired and resolved",
            stack.explain(name),
        )
        # Alertmanager tells Slack and the webhook apart: the webhook's delivery is
        # recorded once the monitor has answered it, which may be a moment later.
        wait_for(
            lambda name=name: "resolved" in [a["status"] for _, a in told(name)],
            DETECT,
            f"the webhook is told {name} resolved",
            stack.explain(name),
        )
    for name in components:
        # The webhook heard the alert and its resolution ...
        keys = {(a["fingerprint"], a["startsAt"]) for _, a in told(name)}
        assert len(keys) == 1, f"{name}: one alert instance expected, got {keys}"
        # ... and ran exactly one repair for it, which worked.
        (attempt,) = stack.attempts(name)
        assert attempt["status"] == "success", attempt
        assert attempt["trigger"] == "alert"
        assert [(a["action"], a["verified"]) for a in attempt["actions"]] == [
            ("restart-hook", True)
        ]
        assert stack.control is not None and stack.control.calls[name] == 1
        assert stack.proxies[name].mode == "pass"
        assert stack.metric("pipeline_component_up", component=name) == 1
        assert (
            stack.metric(
                "pipeline_recovery_attempts_total",
                component=name,
                action="restart-hook",
                result="success",
            )
            == 1
        )
        firing = stack.slack_messages("PipelineComponentDown", name, "firing")
        assert firing and f"*Component:* `{name}`" in firing[0]["text"]
    # The two repairs ran side by side: one at a time per component, not overall.
    database, queue = (stack.attempts(name)[0] for name in components)
    assert database["attempt_id"] != queue["attempt_id"]


def test_repeated_notification_runs_no_second_repair(stack: Stack) -> None:
    component = "search_service"
    standin = stack.standins[component]
    explain = stack.explain(component)
    received_before = stack.metric("pipeline_alerts_received_total", status="firing") or 0.0
    standin.kill()

    # The repair is slow (SLOW_REPAIR_SECONDS), so the alert keeps firing and
    # Alertmanager repeats it every repeat_interval (2 s) meanwhile.
    def repeats() -> list[object]:
        told = stack.tap.about("PipelineComponentDown", component) if stack.tap else []
        return [(d, a) for d, a in told if a["status"] == "firing"][1:]

    wait_for(
        lambda: len(repeats()) >= 2,
        DETECT + SLOW_REPAIR_SECONDS,
        "Alertmanager repeats the firing notification twice",
        explain,
    )
    wait_for(
        lambda: [a for a in stack.attempts(component) if a["success"]],
        REPAIR,
        "the slow repair succeeds",
        explain,
    )
    wait_for(
        lambda: stack.slack_messages("PipelineComponentDown", component, "resolved"),
        DETECT,
        "the alert resolves",
        explain,
    )

    told = stack.tap.about("PipelineComponentDown", component) if stack.tap else []
    firing = [(d, a) for d, a in told if a["status"] == "firing"]
    assert len({(a["fingerprint"], a["startsAt"]) for _, a in firing}) == 1, firing
    first, *again = (d.answer for d, _ in firing)
    assert (first["new"], first["repairs_queued"]) == (1, 1), first
    assert len(again) >= 2
    for answer in again:
        assert (answer["new"], answer["duplicates"], answer["repairs_queued"]) == (0, 1, 0), answer
    # The monitor counted the repeats, and repaired once.
    received = stack.metric("pipeline_alerts_received_total", status="firing") or 0.0
    assert received - received_before >= len(firing), (received_before, received, len(firing))
    (attempt,) = stack.attempts(component)
    assert attempt["trigger"] == "alert" and attempt["status"] == "success"
    assert [a["action"] for a in attempt["actions"]] == ["drain-requests", "restart-search"]
    for result in ("success", "failure"):
        count = stack.metric(
            "pipeline_recovery_attempts_total",
            component=component,
            action="restart-search",
            result=result,
        )
        assert count == (1 if result == "success" else 0), (result, count)
