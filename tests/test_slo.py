"""The publishing SLO: the error budget the monitor computes from its history of
publishing transitions, the config that sets the objective, and the answers
(status and metrics) that carry it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from helpers import REPO, StandinService
from prometheus_client import CollectorRegistry

from exporter.config import ConfigError, load_config
from recovery_webhook import slo
from recovery_webhook.app import make_app
from recovery_webhook.config import AppConfig, SloConfig
from recovery_webhook.openapi import spec

DAY = 86400.0
COMPONENTS = {"network": {"probes": [{"type": "tcp", "targets": ["127.0.0.1:1"]}]}}


def up(ts: float) -> slo.Transition:
    return (ts, "publishing", {"can_publish": True})


def down(ts: float) -> slo.Transition:
    return (ts, "publishing", {"can_publish": False})


class FakeHistory:
    def __init__(self, transitions: Sequence[slo.Transition]) -> None:
        self.transitions = list(transitions)
        self.asked: list[float] = []

    async def transitions_since(self, since: float) -> list[slo.Transition]:
        self.asked.append(since)
        before = [t for t in self.transitions if t[0] < since][-1:]
        return before + [t for t in self.transitions if t[0] >= since]


# -- the computation ------------------------------------------------------------------


@pytest.mark.unit
def test_availability_counts_only_the_time_the_monitor_watched() -> None:
    transitions = [
        up(0.0),
        down(100.0),  # 40 s down
        up(140.0),
        (200.0, "monitor_stopped", {"clean": True}),  # 60 s up, then unknown
        (300.0, "monitor_started", {}),
        up(310.0),  # known again once it has checked
    ]
    measured = slo.availability(transitions, start=0.0, now=400.0)
    assert measured.observed == 200.0 + 90.0
    assert measured.available == 160.0 + 90.0
    assert measured.ratio == pytest.approx(250 / 290)


@pytest.mark.unit
def test_availability_starts_at_the_window_with_the_state_before_it() -> None:
    # Down since before the window: the whole first part of the window is down.
    measured = slo.availability([down(-50.0), up(30.0)], start=0.0, now=100.0)
    assert (measured.observed, measured.available) == (100.0, 70.0)
    assert slo.availability([], start=0.0, now=100.0).ratio is None


@pytest.mark.unit
def test_error_budget_left() -> None:
    # 1000 s observed, 2.5 s down: half the 0.5 % the objective allows.
    budget = slo.ErrorBudget(0.995, 30 * DAY, slo.Availability(1000.0, 997.5))
    assert budget.remaining == pytest.approx(0.5)
    assert budget.as_json() == {
        "objective_percentage": 99.5,
        "window_seconds": 30 * DAY,
        "sli_percentage": 99.75,
        "observed_seconds": 1000.0,
        "unavailable_seconds": 2.5,
        "error_budget_seconds": 5.0,
        "error_budget_remaining_percentage": 50.0,
    }
    overspent = slo.ErrorBudget(0.995, 30 * DAY, slo.Availability(1000.0, 990.0))
    assert overspent.remaining == pytest.approx(-1.0)
    untouched = slo.ErrorBudget(0.995, 30 * DAY, slo.Availability(1000.0, 1000.0))
    assert untouched.remaining == 1.0
    nothing = slo.ErrorBudget(0.995, 30 * DAY, slo.Availability(0.0, 0.0)).as_json()
    assert nothing["sli_percentage"] is None
    assert nothing["error_budget_remaining_percentage"] is None


@pytest.mark.unit
async def test_the_budget_covers_the_configured_window() -> None:
    now = 100 * DAY
    # Down for 6 hours 10 days ago, and for 6 hours 40 days ago.
    history = FakeHistory(
        [up(0.0), down(now - 40 * DAY), up(now - 40 * DAY + 6 * 3600)]
        + [down(now - 10 * DAY), up(now - 10 * DAY + 6 * 3600)]
    )
    month = await slo.publishing_budget(history, SloConfig(), now)
    assert history.asked == [now - 30 * DAY]
    assert month.measured.observed == 30 * DAY
    assert month.measured.observed - month.measured.available == 6 * 3600
    # 6 hours of the 3.6 the objective allows in 30 days.
    assert month.remaining == pytest.approx(1 - 6 / 3.6)

    week = await slo.publishing_budget(history, SloConfig(objective=0.99, window=7 * DAY), now)
    assert week.measured.observed == 7 * DAY
    assert week.remaining == 1.0


@pytest.mark.unit
def test_the_default_window_is_the_one_the_rules_count() -> None:
    groups = yaml.safe_load((REPO / "alert_rules.yml").read_text())["groups"]
    recorded = {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}
    for subject in ("publishing", "component"):
        assert "[30d]" in recorded[f"pipeline:{subject}_errors:ratio_rate30d"]
        assert "ratio_rate30d" in recorded[f"pipeline:{subject}_error_budget_remaining:ratio"]
    assert SloConfig().window == 30 * DAY


@pytest.mark.unit
def test_the_objective_is_exported_for_the_rules() -> None:
    registry = CollectorRegistry()
    slo.export_objective(registry, SloConfig(objective=0.999))
    assert registry.get_sample_value("pipeline_slo_objective_ratio") == 0.999


# -- the config -----------------------------------------------------------------------


@pytest.mark.unit
def test_the_default_objective_is_99_5_percent_over_30_days() -> None:
    config = AppConfig.model_validate({"components": COMPONENTS})
    assert (config.slo.objective, config.slo.window) == (0.995, 30 * DAY)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("given", "objective"), [("99.9%", 0.999), (" 99.5 % ", 0.995), (0.9, 0.9), ("0.99", 0.99)]
)
def test_the_objective_as_a_ratio_or_a_percentage(given: object, objective: float) -> None:
    config = AppConfig.model_validate({"components": COMPONENTS, "slo": {"objective": given}})
    assert config.slo.objective == objective


@pytest.mark.unit
@pytest.mark.parametrize(
    ("slo_section", "message"),
    [
        ({"objective": 99.5}, "slo.objective: a ratio is below 1: write 0.995 or '99.5%'"),
        ({"objective": 1}, "slo.objective: a ratio is below 1: write 0.01 or '1%'"),
        ({"objective": "100%"}, "slo.objective: Input should be less than 1"),
        ({"objective": 0}, "slo.objective: Input should be greater than 0"),
        ({"objective": "most%"}, "slo.objective: expected a ratio such as 0.995"),
        ({"window": "0s"}, "slo.window: Input should be greater than 0"),
        ({"window": "100d"}, "slo.window: 100 days is longer than history.retention (90 days)"),
        ({"budget": 3}, "slo.budget: Extra inputs are not permitted"),
    ],
)
def test_a_bad_slo_section_is_refused_with_the_field(
    tmp_path: Path, slo_section: dict[str, Any], message: str
) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml.safe_dump({"components": COMPONENTS, "slo": slo_section}))
    with pytest.raises(ConfigError) as caught:
        load_config(AppConfig, path, environ={})
    assert message in str(caught.value)


# -- the answers ----------------------------------------------------------------------


def _validator(schema: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", **spec()})


async def _until(
    client: TestClient[Any, Any], path: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = await (await client.get(path)).json()
        if condition(body):
            return body
        assert time.monotonic() < deadline, f"{path}: last answer {body}"
        await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_status_metrics_and_prometheus_carry_the_budget(
    tmp_path: Path, standin_service: StandinService
) -> None:
    config = AppConfig.model_validate(
        {
            "check_interval": 0.2,
            "state_dir": str(tmp_path),
            "components": {
                "validation_service": {
                    "probes": [{"type": "http", "url": standin_service.url, "timeout": 0.15}]
                }
            },
            "slo": {"objective": "99.9%", "window": "7d"},
        }
    )
    status_schema, metrics_schema = _validator("PipelineStatus"), _validator("MetricsSummary")
    async with TestServer(make_app(config, token="t" * 32)) as server:
        async with TestClient(server) as client:
            status = await _until(
                client, "/api/pipeline/status", lambda b: b["slo"]["observed_seconds"] > 0
            )
            status_schema.validate(status)
            budget = status["slo"]
            assert (budget["objective_percentage"], budget["window_seconds"]) == (99.9, 7 * DAY)
            assert budget["sli_percentage"] == 100.0
            assert budget["unavailable_seconds"] == 0.0
            assert budget["error_budget_remaining_percentage"] == 100.0

            standin_service.error(500)
            await _until(client, "/api/pipeline/status", lambda b: not b["can_publish"])
            await asyncio.sleep(0.5)
            standin_service.ok()
            status = await _until(
                client,
                "/api/pipeline/status",
                lambda b: b["can_publish"] and b["slo"]["unavailable_seconds"] > 0,
            )
            status_schema.validate(status)
            budget = status["slo"]
            # Out for about half a second in a couple of seconds: far over 0.1 %.
            assert budget["sli_percentage"] < 99.9
            assert budget["error_budget_remaining_percentage"] < 0
            assert budget["error_budget_seconds"] == pytest.approx(
                0.001 * budget["observed_seconds"], abs=0.1
            )

            metrics = await (await client.get("/api/pipeline/metrics")).json()
            metrics_schema.validate(metrics)
            assert metrics["slo"]["objective_percentage"] == 99.9
            assert metrics["slo"]["unavailable_seconds"] >= budget["unavailable_seconds"]

            exposition = await (await client.get("/metrics")).text()
            assert "\npipeline_slo_objective_ratio 0.999\n" in exposition
