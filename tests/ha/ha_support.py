"""Several ``pipeline-monitor run`` processes sharing one PostgreSQL store.

Each monitor has its own state directory, port and name (PIPELINE_INSTANCE), the
same config, the same API token and the same store (PIPELINE_HISTORY_URL). The
component they watch is a stand-in validation service, a process of its own,
which a test kills with SIGKILL; its repair command (REPAIR) writes down when it
starts and when it ends, so that a test can prove that no two repair commands
ever ran at once, whichever monitor ran them and however they ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from recovery.recovery_support import (
    PYTHON,
    TOKEN,
    MonitorProcess,
    StandIn,
    make_alert,
    payload,
    wait_until,
)

# The repair: note its start, take SLOW seconds (the flag file's number, 0 if
# none), start the stand-in again, note its end; a SIGTERM (its monitor is gone)
# notes the end too.
REPAIR = """
import os, signal, subprocess, sys, time
record, slow_file, *standin = sys.argv[1:]
def note(what):
    with open(record, "a") as f:
        f.write(f"{what} {time.time():.6f} {os.getpid()}\\n")
def ended(*_):
    note("end-killed")
    sys.exit(143)
signal.signal(signal.SIGTERM, ended)
note("start")
try:
    time.sleep(float(open(slow_file).read()))
except FileNotFoundError:
    pass
code = subprocess.call(standin)
note("end")
sys.exit(code)
"""


@dataclass
class Group:
    """Monitors on one store, watching one stand-in service."""

    tmp_path: Path
    store_url: str
    names: Sequence[str] = ("monitor-a", "monitor-b")
    check_interval: float = 0.5
    lease_ttl: float = 3.0
    probe_urls: dict[str, str] = field(default_factory=dict)
    """Per monitor, where it reaches the validation service (default: directly)."""
    store_urls: dict[str, str] = field(default_factory=dict)
    """Per monitor, where it reaches the store (default: ``store_url``)."""
    extra_components: dict[str, Any] = field(default_factory=dict)
    monitors: dict[str, MonitorProcess] = field(default_factory=dict)
    standin: StandIn | None = None

    @property
    def record(self) -> Path:
        return self.tmp_path / "repairs.record"

    @property
    def slow_file(self) -> Path:
        return self.tmp_path / "repair.slow"

    def config(self, name: str) -> Path:
        assert self.standin is not None
        url = self.probe_urls.get(name, self.standin.url)
        data = {
            "check_interval": self.check_interval,
            "components": {
                "validation_service": {"probes": [{"type": "http", "url": url, "timeout": 0.4}]},
                **self.extra_components,
            },
            "audit": {"file": str(self.tmp_path / f"{name}.audit.log")},
            "recovery": {
                "max_attempts": 3,
                "retry_delay": "1s",
                "verify_timeout": "5s",
                "verify_interval": "0.2s",
                "lease_ttl": self.lease_ttl,
                "rules": [
                    {
                        "alertname": ["PipelineComponentDown", "ManualRecovery"],
                        "component": "validation_service",
                        "actions": [
                            {
                                "type": "command",
                                "name": "restart-validator",
                                "argv": [
                                    PYTHON,
                                    "-c",
                                    REPAIR,
                                    str(self.record),
                                    str(self.slow_file),
                                    *self.standin.argv(detach=True),
                                ],
                                "timeout": "60s",
                            }
                        ],
                    },
                    {"alertname": "PipelineComponentDown", "actions": []},
                ],
            },
        }
        path = self.tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    async def start(self) -> None:
        self.standin = self.standin or StandIn(self.tmp_path)
        await asyncio.to_thread(self.standin.start)
        for name in self.names:
            monitor = MonitorProcess(
                self.tmp_path,
                self.config(name),
                self.tmp_path / f"{name}.state",
                env={
                    "PIPELINE_INSTANCE": name,
                    "PIPELINE_HISTORY_URL": self.store_urls.get(name, self.store_url),
                },
                name=name,
            )
            self.monitors[name] = monitor
        await asyncio.gather(*(m.start() for m in self.monitors.values()))
        await wait_until(self.everyone_sees_everyone, timeout=30, message="the group forms")

    async def stop(self) -> None:
        for monitor in self.monitors.values():
            with contextlib.suppress(Exception):
                await monitor.stop()
        if self.standin is not None:
            await asyncio.to_thread(self.standin.cleanup)

    async def everyone_sees_everyone(self) -> bool:
        for monitor in self.monitors.values():
            if monitor.process is None or monitor.process.returncode is not None:
                continue
            try:
                status = await monitor.get("/api/pipeline/status")
            except (aiohttp.ClientError, AssertionError):
                return False
            if sorted(m["name"] for m in status["monitors"]) != sorted(self.live_names()):
                return False
        return True

    def live_names(self) -> list[str]:
        return [
            name
            for name, m in self.monitors.items()
            if m.process is not None and m.process.returncode is None
        ]

    def __getitem__(self, name: str) -> MonitorProcess:
        return self.monitors[name]

    # -- what happened -------------------------------------------------------------------

    def repairs(self) -> list[tuple[float, float | None, str]]:
        """(start, end, how it ended) of each repair command, in start order."""
        if not self.record.exists():
            return []
        started: dict[str, float] = {}
        found: list[tuple[float, float | None, str]] = []
        for line in self.record.read_text().splitlines():
            what, at, pid = line.split()
            if what == "start":
                started[pid] = float(at)
            else:
                found.append((started.pop(pid), float(at), what))
        found += [(at, None, "running") for at in started.values()]
        return sorted(found)

    def assert_no_overlap(self) -> None:
        runs = self.repairs()
        for (_, end, _), (start, _, _) in zip(runs, runs[1:], strict=False):
            assert end is not None and end <= start, f"two repair commands at once: {runs}"


def alert_from(monitor: str, **extra: Any) -> dict[str, Any]:
    """PipelineComponentDown for the validation service, as one monitor's
    Prometheus series would raise it (its ``instance`` label)."""
    alert = make_alert("validation_service", **extra)
    alert["labels"]["instance"] = monitor
    alert["fingerprint"] = f"{alert['fingerprint']}-{monitor}"
    return alert


async def post_to(monitor: MonitorProcess, body: bytes) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{monitor.url}/api/alertmanager/webhook",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        ) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())


def body_of(*alerts: dict[str, Any]) -> bytes:
    return json.dumps(payload(*alerts)).encode()


async def attempts(monitor: MonitorProcess) -> list[dict[str, Any]]:
    events = (await monitor.get("/api/pipeline/history?limit=1000"))["events"]
    return [e for e in events if e["type"] == "recovery_attempt"]
