"""The ProbeScheduler: hung dependencies cost their own component the timeout and
nothing else, scrapes never wait for probes, concurrent forced checks share one
run, and what the runs find reaches the component state and /metrics."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from faults import FaultProxy, HangingListener
from helpers import Harness, StandinService, address, host_port, wait_until, with_netloc
from prometheus_client.parser import text_string_to_metric_families

from exporter.model import ProbeResult, Status
from exporter.monitor import Monitor
from exporter.scheduler import ProbeScheduler
from exporter.state import ComponentState, PipelineState
from recovery_webhook.api import SERVICE
from recovery_webhook.app import make_app
from recovery_webhook.config import AppConfig

pytestmark = pytest.mark.integration

INTERVAL = 0.5


def samples(text: str, name: str) -> dict[str, float]:
    """``{component: value}`` of one metric in a text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels["component"]] = sample.value
    return found


async def test_hung_dependencies_do_not_delay_the_others_or_a_scrape(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """Two dependencies hang for the whole test; the rest keep their schedule.

    The validation service never answers (a silent listener) and the database
    freezes with the probe's connection open (psycopg then spends up to 10 s
    trying to cancel its query). Every component must still get a verdict
    every interval, and /metrics must answer at once.
    """
    async with FaultProxy(*host_port(pg_dsn)) as proxy:
        with HangingListener() as listener:
            config = AppConfig.model_validate(
                {
                    "check_interval": INTERVAL,
                    "state_dir": str(tmp_path / "state"),
                    "components": {
                        "validation_service": {
                            "probes": [
                                {
                                    "type": "http",
                                    "url": f"http://{listener.address}/health",
                                    "timeout": 0.4,
                                }
                            ]
                        },
                        "database": {
                            "probes": [
                                {
                                    "type": "postgres",
                                    "dsn": with_netloc(pg_dsn, port=proxy.port),
                                    "timeout": 0.4,
                                }
                            ]
                        },
                        "network": {"probes": [{"type": "tcp", "targets": [address(pg_dsn)]}]},
                        "queue": {"probes": [{"type": "redis", "url": redis_url}]},
                        "storage": {
                            "probes": [
                                {
                                    "type": "filesystem",
                                    "path": str(tmp_path / "files"),
                                    "create_missing": True,
                                    "free_bytes_degraded": None,
                                }
                            ]
                        },
                    },
                }
            )
            app = make_app(config, token="test-token")
            async with TestClient(TestServer(app)) as client:
                monitor = app[SERVICE].monitor
                state = monitor.state.components
                await wait_until(
                    lambda: (
                        state["database"].status is Status.HEALTHY
                        and all(c.last_check is not None for c in state.values())
                    ),
                    message="a first verdict on every component",
                )
                # As `pipeline-monitor run` does once started (app.serve): what is
                # already allocated, here the whole test session's objects, is left
                # out of the cyclic GC. Late in a full test run, a full pass over all
                # of them took 0.3-0.44 s, as long as a hung probe's timeout.
                gc.collect()
                gc.freeze()
                try:
                    await proxy.hang()  # freeze the probe's open connection
                    seen: dict[str, list[float]] = {name: [] for name in state}
                    scrape_times: list[float] = []
                    last_runs: list[dict[str, float]] = []
                    deadline = time.monotonic() + 3.2
                    while time.monotonic() < deadline:
                        for name, component in state.items():
                            at = component.last_check
                            if at is not None and (not seen[name] or seen[name][-1] != at):
                                seen[name].append(at)
                        started = time.perf_counter()
                        response = await client.get("/metrics")
                        text = await response.text()
                        scrape_times.append(time.perf_counter() - started)
                        assert response.status == 200
                        last_runs.append(samples(text, "pipeline_probe_last_run_timestamp_seconds"))
                        await asyncio.sleep(0.05)
                finally:
                    gc.unfreeze()
            assert max(scrape_times) < 0.2, f"slow scrapes: {sorted(scrape_times)[-3:]}"
            hung = {"validation_service", "database"}
            for name, times in seen.items():
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                # ~6 runs in 3.2 s; a gap is one interval, never a skipped cycle.
                # A hung one's run may also first wait, for at most its timeout
                # (0.4 s), for the previous run's client to clean up.
                limit = 2 * INTERVAL + (0.4 if name in hung else 0.0)
                assert len(times) >= 5, f"{name} ran {len(times)} times: {times}"
                assert max(gaps) < limit, f"{name} missed its schedule: {gaps}"
            assert state["validation_service"].status is Status.UNHEALTHY
            assert state["database"].status is Status.UNHEALTHY
            assert "timed out" in (state["database"].error or "")
            for name in ("network", "queue", "storage"):
                assert state[name].status is Status.HEALTHY, state[name]
            # The scrapes saw the timestamps advance too.
            first, last = last_runs[0], last_runs[-1]
            for name in state:
                assert last[name] - first[name] >= 2.0, name


async def test_concurrent_forced_checks_share_one_run(
    probe_harness: Callable[..., Harness], standin_service: StandinService
) -> None:
    standin_service.slow(0.3)
    harness = probe_harness({"type": "http", "url": standin_service.url, "timeout": 2})
    scheduler = harness.monitor.scheduler
    await asyncio.gather(*(scheduler.run_cycle() for _ in range(5)))
    assert standin_service.hits == 1
    assert harness.monitor.state.components["dep"].runs == 1

    # A per-component check joins a cycle that is under way, too.
    cycle = asyncio.ensure_future(scheduler.run_cycle())
    component = await scheduler.check_component("dep")
    await cycle
    assert component.runs == 2
    assert standin_service.hits == 2

    # Once it is over, the next forced check probes afresh.
    await scheduler.run_cycle()
    assert standin_service.hits == 3

    with pytest.raises(KeyError):
        await scheduler.check_component("nope")


async def test_a_cancelled_caller_does_not_cancel_the_shared_run(
    probe_harness: Callable[..., Harness], standin_service: StandinService
) -> None:
    standin_service.slow(0.3)
    harness = probe_harness({"type": "http", "url": standin_service.url, "timeout": 2})
    caller = asyncio.ensure_future(harness.monitor.scheduler.run_cycle())
    await wait_until(lambda: standin_service.hits == 1, message="the probe running")
    caller.cancel()  # an HTTP client hanging up on force-check
    with pytest.raises(asyncio.CancelledError):
        await caller
    component = harness.monitor.state.components["dep"]
    await wait_until(lambda: component.runs == 1, message="the run finishing anyway")
    assert component.status is Status.HEALTHY


async def test_background_loop_probes_every_interval(
    make_monitor: Callable[..., Monitor], standin_service: StandinService
) -> None:
    monitor = make_monitor(
        {
            "check_interval": 0.2,
            "components": {
                "validation_service": {
                    "probes": [{"type": "http", "url": standin_service.url, "timeout": 0.1}]
                }
            },
        }
    )
    await monitor.start()
    await wait_until(lambda: standin_service.hits >= 5, timeout=3, message="five runs")
    await monitor.scheduler.stop()
    hits = standin_service.hits
    await asyncio.sleep(0.4)
    assert standin_service.hits == hits, "probing went on after stop()"


class _Exploding:
    """A probe with a bug: it raises instead of returning a result."""

    name = "buggy"
    timeout = 1.0

    async def run(self) -> ProbeResult:
        raise RuntimeError("bug in the probe")

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def secrets(self) -> list[str]:
        return []


@pytest.mark.unit
async def test_a_crashing_probe_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    state = PipelineState([ComponentState("dep", "Dep")])
    scheduler = ProbeScheduler(state, {"dep": [_Exploding()]}, interval=10)
    await scheduler.run_cycle()
    component = state.components["dep"]
    assert component.status is Status.UNHEALTHY
    assert component.error == "probe crashed: bug in the probe"
    assert "probe buggy of dep crashed" in caplog.text
    await scheduler.run_cycle()  # and the next cycle runs as usual
    assert component.runs == 2
    await scheduler.stop()


async def test_stop_ends_hung_runs_at_once(probe_harness: Callable[..., Harness]) -> None:
    with HangingListener() as listener:
        harness = probe_harness(
            {"type": "http", "url": f"http://{listener.address}/", "timeout": 5}, interval=10
        )
        scheduler = harness.monitor.scheduler
        scheduler.start()
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await scheduler.stop()
        assert time.perf_counter() - started < 0.5


async def test_transitions_reach_state_and_metrics(
    probe_harness: Callable[..., Harness], standin_service: StandinService
) -> None:
    harness = probe_harness({"type": "http", "url": standin_service.url})
    registry = harness.monitor.registry
    component = harness.monitor.state.components["dep"]
    labels = {"component": "dep"}

    def value(name: str, **extra: Any) -> float | None:
        return registry.get_sample_value(name, {**labels, **extra})

    # Never probed: no made-up health, but the counters exist.
    assert value("pipeline_component_up") is None
    assert value("pipeline_probe_runs_total") == 0

    await harness.run()
    assert value("pipeline_component_up") == 1
    assert value("pipeline_component_status", status="healthy") == 1
    assert value("pipeline_component_status", status="unhealthy") == 0
    assert value("pipeline_probe_success", probe="http") == 1
    assert registry.get_sample_value("pipeline_can_publish") == 1
    healthy_since = value("pipeline_component_last_change_timestamp_seconds")

    standin_service.error(503)
    await harness.run()
    await harness.run()
    assert value("pipeline_component_up") == 0
    assert value("pipeline_component_status", status="unhealthy") == 1
    assert value("pipeline_component_status", status="healthy") == 0
    assert value("pipeline_probe_success", probe="http") == 0
    assert value("pipeline_probe_failures_total") == 2
    assert value("pipeline_probe_runs_total") == 3
    assert registry.get_sample_value("pipeline_can_publish") == 0
    changed = value("pipeline_component_last_change_timestamp_seconds")
    assert healthy_since is not None and changed is not None and changed > healthy_since
    assert [(t.from_status, t.to_status) for t in component.transitions] == [
        (Status.UNKNOWN, Status.HEALTHY),
        (Status.HEALTHY, Status.UNHEALTHY),
    ]
    assert component.transitions[-1].error == f"{standin_service.url} answered HTTP 503"
    assert registry.get_sample_value("pipeline_check_interval_seconds") == 10
