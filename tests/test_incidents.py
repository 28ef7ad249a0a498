"""Incidents derived from history events, and how editors read them."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any

import pytest

from recovery_webhook.editor import duration_words, incident_view, when
from recovery_webhook.incidents import (
    FIXED_BY_ENGINEERS,
    ONGOING,
    RECOVERED_BY_ITSELF,
    REPAIRED_AUTOMATICALLY,
    Incident,
    derive_incidents,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 10, 14, 0, tzinfo=timezone.utc).timestamp()
_ids = itertools.count(1)


def transition(at: float, component: str, old: str, new: str, error: str | None = None) -> Any:
    return {
        "id": next(_ids),
        "timestamp": T0 + at,
        "type": "transition",
        "component": component,
        "from": old,
        "to": new,
        "error": error,
    }


def attempt(
    started: float, ended: float, component: str, status: str, trigger: str = "alert"
) -> Any:
    return {
        "id": next(_ids),
        "timestamp": T0 + ended,
        "type": "recovery_attempt",
        "component": component,
        "attempt_id": f"{component}_{int(started)}",
        "trigger": trigger,
        "started_at": T0 + started,
        "ended_at": T0 + ended,
        "status": status,
        "success": status == "success",
    }


def event(at: float, kind: str, component: str | None = None, **data: Any) -> Any:
    return {"id": next(_ids), "timestamp": T0 + at, "type": kind, "component": component, **data}


def only(events: list[Any]) -> Incident:
    (incident,) = derive_incidents(events)
    return incident


def test_healthy_history_has_no_incident():
    assert derive_incidents([transition(0, "queue", "unknown", "healthy")]) == []


def test_recovered_by_itself_with_times_status_and_error():
    incident = only(
        [
            transition(0, "queue", "unknown", "healthy"),
            transition(60, "queue", "healthy", "degraded", "q: 20 messages waiting"),
            transition(120, "queue", "degraded", "healthy"),
        ]
    )
    assert incident.component == "queue"
    assert incident.started_at == T0 + 60 and incident.ended_at == T0 + 120
    assert incident.status == "degraded" and incident.error == "q: 20 messages waiting"
    assert incident.outcome == RECOVERED_BY_ITSELF
    assert incident.duration(now=T0 + 999) == 60


def test_worst_status_and_its_error_are_kept():
    incident = only(
        [
            transition(0, "db", "healthy", "degraded", "slow"),
            transition(10, "db", "degraded", "unhealthy", "refused"),
            transition(20, "db", "unhealthy", "degraded", "slow again"),
        ]
    )
    assert incident.status == "unhealthy" and incident.error == "refused"
    assert incident.outcome == ONGOING and incident.ongoing
    assert incident.duration(now=T0 + 50) == 50


def test_repair_recorded_after_the_closing_probe_still_counts():
    # The repair's event is written when it ends, after the re-probe that closed it.
    incident = only(
        [
            transition(0, "db", "healthy", "unhealthy", "refused"),
            transition(30, "db", "unhealthy", "healthy"),
            attempt(5, 31, "db", "success"),
        ]
    )
    assert incident.outcome == REPAIRED_AUTOMATICALLY
    assert incident.repair_attempts == 1 and incident.attempt_ids == ["db_5"]


@pytest.mark.parametrize("trigger", ["alert", "retry", "resume"])
def test_automatic_triggers(trigger: str):
    incident = only(
        [
            transition(0, "db", "healthy", "unhealthy"),
            attempt(1, 2, "db", "success", trigger),
            transition(2, "db", "unhealthy", "healthy"),
        ]
    )
    assert incident.outcome == REPAIRED_AUTOMATICALLY


def test_failed_repairs_then_healthy_is_recovered_by_itself():
    incident = only(
        [
            transition(0, "db", "healthy", "unhealthy"),
            attempt(1, 5, "db", "failure"),
            attempt(60, 65, "db", "interrupted"),
            attempt(70, 70, "db", "dry_run"),
            transition(80, "db", "unhealthy", "healthy"),
        ]
    )
    assert incident.outcome == RECOVERED_BY_ITSELF
    assert incident.repair_attempts == 2


def test_escalated_is_fixed_by_engineers():
    incident = only(
        [
            transition(0, "validation_service", "healthy", "unhealthy", "HTTP 503"),
            event(1, "escalation", "validation_service", reason="no automatic repair"),
            transition(300, "validation_service", "unhealthy", "healthy"),
            event(300.1, "manual_intervention_cleared", "validation_service", reason="healthy"),
        ]
    )
    assert incident.escalated and incident.outcome == FIXED_BY_ENGINEERS


def test_a_repair_a_person_asked_for_is_fixed_by_engineers():
    incident = only(
        [
            transition(0, "db", "healthy", "unhealthy"),
            attempt(100, 101, "db", "success", trigger="manual"),
            transition(101, "db", "unhealthy", "healthy"),
        ]
    )
    assert incident.outcome == FIXED_BY_ENGINEERS


def test_events_outside_any_incident_are_ignored():
    incidents = derive_incidents(
        [
            attempt(0, 1, "db", "success", trigger="manual"),  # a drill while healthy
            event(2, "escalation", "db"),
            transition(10, "db", "healthy", "unhealthy"),
            transition(20, "db", "unhealthy", "healthy"),
            attempt(30, 31, "db", "success"),  # started after it ended
        ]
    )
    assert [i.outcome for i in incidents] == [RECOVERED_BY_ITSELF]
    assert incidents[0].repair_attempts == 0


def test_a_restart_does_not_end_an_incident():
    incident = only(
        [
            transition(0, "db", "healthy", "unhealthy", "refused"),
            event(10, "monitor_stopped", None, clean=True),
            event(20, "monitor_started", None),
            transition(21, "db", "unknown", "unhealthy", "refused"),
            transition(40, "db", "unhealthy", "healthy"),
        ]
    )
    assert incident.started_at == T0 and incident.ended_at == T0 + 40


def test_components_are_apart_newest_first_and_limited():
    events = [
        transition(0, "db", "healthy", "unhealthy"),
        transition(5, "queue", "healthy", "degraded"),
        transition(10, "db", "unhealthy", "healthy"),
        transition(20, "db", "healthy", "unhealthy"),
    ]
    incidents = derive_incidents(reversed(events))  # History returns newest first
    assert [(i.component, i.started_at - T0, i.outcome) for i in incidents] == [
        ("db", 20, ONGOING),
        ("queue", 5, ONGOING),
        ("db", 0, RECOVERED_BY_ITSELF),
    ]
    assert [i.started_at - T0 for i in derive_incidents(events, limit=2)] == [20, 5]


# -- editors' words -------------------------------------------------------------------


def test_incident_view_words():
    incident = only(
        [
            transition(0, "validation_service", "healthy", "unhealthy", "HTTP 503"),
            attempt(1, 185, "validation_service", "success"),
            transition(185, "validation_service", "unhealthy", "healthy"),
        ]
    )
    view = incident_view(incident, "Article checks", now=T0 + 3600, tz="UTC")
    assert view.model_dump() == {
        "component": "validation_service",
        "display_name": "Article checks",
        "status": "unhealthy",
        "outcome": "repaired_automatically",
        "started_at": "2026-03-10T14:00:00+00:00",
        "ended_at": "2026-03-10T14:03:05+00:00",
        "duration_seconds": 185.0,
        "repair_attempts": 1,
        "escalated": False,
        "error": "HTTP 503",
        "what": "Not working",
        "when_text": "Started at 14:00 UTC",
        "outcome_text": "Repaired automatically",
        "duration_text": "took 3 minutes",
    }


def test_ongoing_incident_words_say_who_is_on_it():
    incident = only([transition(0, "queue", "healthy", "degraded")])
    view = incident_view(incident, "Publishing queue", now=T0 + 90, tz="UTC")
    assert (view.what, view.outcome_text, view.duration_text) == (
        "Slow or partly working",
        "Ongoing",
        "1 minute so far",
    )
    manual = incident_view(incident, "Publishing queue", now=T0 + 90, tz="UTC", manual=True)
    assert manual.outcome_text == "Ongoing: engineers are working on it"
    repairing = incident_view(incident, "Q", now=T0 + 90, tz="UTC", repairing=True)
    assert repairing.outcome_text == "Ongoing: an automatic repair is under way"
    assert repairing.ended_at is None


def test_when_words_in_the_configured_zone():
    now = T0 + 3600
    assert when(T0, _zone("UTC"), now) == "14:00 UTC"
    assert when(T0, _zone("Europe/Paris"), now) == "15:00 CET"
    assert when(T0 - 86400, _zone("UTC"), now) == "yesterday at 14:00 UTC"
    assert when(T0 - 5 * 86400, _zone("UTC"), now) == "5 Mar at 14:00 UTC"
    assert when(T0 - 365 * 86400, _zone("UTC"), now) == "10 Mar 2025 at 14:00 UTC"
    old = incident_view(
        only([transition(-86400, "db", "healthy", "unhealthy")]), "DB", now=now, tz="UTC"
    )
    assert old.when_text == "Started yesterday at 14:00 UTC"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "less than a minute"),
        (59.9, "less than a minute"),
        (60, "1 minute"),
        (125, "2 minutes"),
        (3600, "1 hour"),
        (3600 + 5 * 60, "1 hour 5 minutes"),
        (2 * 86400 + 3 * 3600 + 59, "2 days 3 hours"),
        (86400 + 30, "1 day"),
    ],
)
def test_duration_words(seconds: float, words: str):
    assert duration_words(seconds) == words


def _zone(name: str) -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)
