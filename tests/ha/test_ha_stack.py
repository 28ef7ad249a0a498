"""The high-availability stack for real: two monitors on one PostgreSQL store,
Prometheus scraping both and sending to two clustered Alertmanagers, each of
which delivers every notification to both monitors.

A crash of the validation service raises an alert per monitor (each exports its
own series), which the Alertmanagers deliver, repeated, to both monitors: one
repair runs, verified, each alert instance is recorded once, and either
monitor's page and API give the same answer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from recovery.recovery_support import TOKEN, free_port, wait_until

from ha.ha_support import Group, attempts

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import localstack  # noqa: E402 - deploy/ is not a package

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.allow_blocking("the monitors run in processes of their own"),
]

AM_TIMING = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "2s"}


class Alerting:
    """Prometheus and two clustered Alertmanagers around a group of monitors."""

    def __init__(self, work: Path, group: Group) -> None:
        self.work = work
        self.group = group
        self.slack = localstack.SlackSink(echo=None)
        self.processes: list[Any] = []
        self.alertmanagers: list[str] = []
        self.prometheus = ""

    def start(self) -> None:
        prometheus, alertmanager = localstack.prometheus_binary(), localstack.alertmanager_binary()
        assert prometheus and alertmanager, "make test installs prometheus and its alertmanager"
        self.slack.start()
        monitors = list(self.group.monitors.values())
        config = localstack.render_alertmanager(
            self.work,
            f"{monitors[0].url}/api/alertmanager/webhook",
            TOKEN,
            self.slack.url,
            self.slack.heartbeat_url,
            AM_TIMING,
        )
        data = yaml.safe_load(config.read_text())
        for receiver in data["receivers"]:
            if receiver["name"] == "recovery-webhook":
                (hook,) = receiver["webhook_configs"]
                receiver["webhook_configs"] = [
                    {**hook, "url": f"{m.url}/api/alertmanager/webhook"} for m in monitors
                ]
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        gossip = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        for index, listen in enumerate(gossip):
            web = f"127.0.0.1:{free_port()}"
            peers = [f"--cluster.peer={p}" for p in gossip if p != listen]
            argv = [
                alertmanager,
                f"--config.file={config}",
                f"--storage.path={self.work / f'alertmanager-{index}'}",
                f"--web.listen-address={web}",
                f"--cluster.listen-address={listen}",
                *peers,
                "--cluster.settle-timeout=3s",
                "--cluster.peer-timeout=2s",
                "--cluster.reconnect-interval=1s",
            ]
            self.processes.append(localstack.start(argv, self.work / f"alertmanager-{index}.log"))
            self.alertmanagers.append(web)
        prom_config = localstack.render_prometheus(
            self.work, monitors[0].url.removeprefix("http://"), self.alertmanagers[0], fast=True
        )
        data = yaml.safe_load(prom_config.read_text())
        for job in data["scrape_configs"]:
            if job["job_name"] == "pipeline-monitor":
                job["static_configs"] = [
                    {"targets": [m.url.removeprefix("http://") for m in monitors]}
                ]
        data["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": self.alertmanagers}]}]
        prom_config.write_text(yaml.safe_dump(data, sort_keys=False))
        address = f"127.0.0.1:{free_port()}"
        self.processes.append(
            localstack.start_prometheus(prometheus, prom_config, self.work, address, fast=True)
        )
        self.prometheus = f"http://{address}"
        for web, process in zip(self.alertmanagers, self.processes, strict=False):
            localstack.wait_http(f"http://{web}/-/ready", 30, process)
        localstack.wait_http(f"{self.prometheus}/-/ready", 30, self.processes[-1])

    def stop(self) -> None:
        localstack.stop_all(self.processes)
        self.slack.stop()


@pytest.fixture
async def stack(tmp_path: Path, pg_database: str) -> AsyncIterator[tuple[Group, Alerting]]:
    group = Group(tmp_path, pg_database)
    await group.start()
    alerting = Alerting(tmp_path, group)
    try:
        await asyncio.to_thread(alerting.start)
        yield group, alerting
    finally:
        await asyncio.to_thread(alerting.stop)
        await group.stop()


async def test_a_crash_makes_one_repair_whichever_monitor_hears_of_it(
    stack: tuple[Group, Alerting],
) -> None:
    group, _ = stack
    a, b = group["monitor-a"], group["monitor-b"]
    group.slow_file.write_text("3")  # Alertmanager repeats the alerts meanwhile
    assert group.standin is not None
    group.standin.kill()

    async def repaired() -> bool:
        return all([await m.component("validation_service") == "healthy" for m in (a, b)])

    async def alerted() -> bool:
        history = (await a.get("/api/pipeline/history?limit=1000"))["events"]
        return len([e for e in history if e["type"] == "alert"]) >= 1

    await wait_until(alerted, timeout=60, message="Alertmanager delivers the alert")
    await wait_until(repaired, timeout=60, message="the service is repaired")
    await asyncio.sleep(4)  # the alerts resolve; a second repair would have started

    assert len(group.repairs()) == 1
    group.assert_no_overlap()
    assert group.standin.starts == 2
    done = await attempts(a)
    assert [e["status"] for e in done] == ["success"]
    assert done == await attempts(b)

    history = (await b.get("/api/pipeline/history?limit=1000"))["events"]
    firing = [e for e in history if e["type"] == "alert" and e["status"] == "firing"]
    keys = [(e["fingerprint"], e["starts_at"]) for e in firing]
    assert len(keys) == len(set(keys))  # each alert instance recorded once
    assert len(keys) >= 1
    texts = [await _metrics(m) for m in (a, b)]
    deliveries = sum(
        float(line.split()[-1])
        for text in texts
        for line in text.splitlines()
        if line.startswith('pipeline_alerts_received_total{status="firing"}')
    )
    assert deliveries > len(keys)  # both monitors heard them, more than once

    first, second = [await m.get("/api/pipeline/status") for m in (a, b)]
    for key in ("components", "overall_status", "can_publish", "recent_failures"):
        assert first[key] == second[key], key
    assert sorted(m["name"] for m in first["monitors"]) == ["monitor-a", "monitor-b"]
    page_a, page_b = [await m.get("/api/pipeline/editor-message") for m in (a, b)]
    assert (page_a["state"], page_a["incidents"]) == (page_b["state"], page_b["incidents"])


async def _metrics(monitor: Any) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{monitor.url}/metrics") as response:
            return await response.text()
