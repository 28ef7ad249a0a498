"""Helpers of the recovery tests (fixtures are in this folder's conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from recovery_webhook import api
from recovery_webhook.config import AppConfig
from recovery_webhook.service import PipelineService

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin_service.py"
TOKEN = "test-token-0123456789abcdef"
PYTHON = sys.executable

_fingerprints = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


async def wait_until(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll ``condition`` (sync or async) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {timeout:g}s")
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {timeout:g}s")
        time.sleep(0.05)


def action_context(monitor: Any, component: str, timeout: float = 10.0) -> Any:
    """What a repair action of ``component`` sees when ``monitor`` runs it."""
    from recovery_webhook.actions import ActionContext

    async def reset_clients() -> int:
        await monitor.scheduler.reset(component)
        return len(monitor.scheduler.probes[component])

    return ActionContext(
        component=component,
        probes=monitor.config.components[component].probes,
        session=monitor.context.session,
        reset_clients=reset_clients,
        timeout=timeout,
    )


# -- configs and payloads ----------------------------------------------------------


def build_config(
    state_dir: Path,
    components: dict[str, Any],
    rules: list[dict[str, Any]] | None = None,
    *,
    check_interval: float = 1.0,
    recovery: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    **extra: Any,
) -> AppConfig:
    """An AppConfig with short intervals, its history and audit log in ``state_dir``."""
    settings: dict[str, Any] = {
        "max_attempts": 3,
        "retry_delay": 0.5,
        "verify_timeout": 3.0,
        "verify_interval": 0.2,
        "action_timeout": 20.0,
    }
    settings.update(recovery or {})
    if rules is not None:
        settings["rules"] = rules
    data: dict[str, Any] = {
        "check_interval": check_interval,
        "state_dir": str(state_dir),
        "components": components,
        "audit": {"file": str(state_dir / "audit.log")},
        "recovery": settings,
        "server": {"host": "127.0.0.1", "port": 0, **(server or {})},
        **extra,
    }
    return AppConfig.model_validate(data)


def rule(component: str, *actions: dict[str, Any], alertname: Any = None) -> dict[str, Any]:
    return {
        "alertname": alertname or ["PipelineComponentDown", "ManualRecovery"],
        "component": component,
        "actions": list(actions),
    }


def make_alert(
    component: str | None,
    alertname: str = "PipelineComponentDown",
    *,
    status: str = "firing",
    fingerprint: str | None = None,
    starts_at: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, "severity": "critical", **labels}
    if component is not None:
        all_labels["component"] = component
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{component} is down", "runbook_url": "http://runbooks/x"},
        "startsAt": starts_at or datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint or f"{next(_fingerprints):016x}{uuid.uuid4().hex[:8]}",
    }


def resolved(alert: dict[str, Any]) -> dict[str, Any]:
    """The same alert instance (fingerprint + startsAt), resolved."""
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {**alert, "status": "resolved", "endsAt": now}


def payload(*alerts: dict[str, Any], receiver: str = "pipeline-recovery") -> dict[str, Any]:
    """Alertmanager's webhook body, version 4."""
    firing = any(a["status"] == "firing" for a in alerts)
    common = alerts[0]["labels"] if alerts else {}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="PipelineComponentDown"}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


# -- reading what the service left ------------------------------------------------


def query_db(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the history database the way an operator would, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def attempts(path: Path, component: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT attempt_id, component, alert_key, trigger, status, error, actions FROM attempts"
    args: tuple[Any, ...] = ()
    if component is not None:
        sql += " WHERE component = ?"
        args = (component,)
    rows = query_db(path, sql + " ORDER BY started_at", *args)
    keys = ("attempt_id", "component", "alert_key", "trigger", "status", "error", "actions")
    return [{**dict(zip(keys, r, strict=True)), "actions": json.loads(r[6])} for r in rows]


def audit_events(path: Path, event: str) -> list[dict[str, Any]]:
    """The JSON payloads of the audit log's ``EVENT: {...}`` lines."""
    if not path.exists():
        return []
    marker = f" - {event}: "
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if marker in line:
            found.append(json.loads(line.split(marker, 1)[1]))
    return found


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    """The value of the sample ``sample`` whose labels include ``labels``."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


# -- the service on a real port ----------------------------------------------------


@dataclass
class RunningApp:
    """``make_app`` served by aiohttp on a loopback port, with a client for it."""

    config: AppConfig
    app: web.Application
    runner: web.AppRunner
    url: str
    token: str
    session: aiohttp.ClientSession
    stopped: bool = field(default=False)

    @property
    def service(self) -> PipelineService:
        return self.app[api.SERVICE]

    @property
    def db_path(self) -> Path:
        return self.config.history_path

    @property
    def audit_path(self) -> Path:
        assert self.config.audit.file is not None
        return Path(self.config.audit.file)

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def post_alerts(self, *alerts: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(
            f"{self.url}/api/alertmanager/webhook", json=payload(*alerts), headers=self.auth()
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            return dict(body)

    async def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        async with self.session.get(self.url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def status(self) -> dict[str, Any]:
        return dict(await self.get_json("/api/pipeline/status"))

    async def component_status(self, component: str) -> str:
        return str((await self.status())["components"][component])

    async def history(self, limit: int = 1000, anonymous: bool = False) -> list[dict[str, Any]]:
        """The history as an engineer with the token reads it (actions' outputs too)."""
        headers = None if anonymous else self.auth()
        path = f"/api/pipeline/history?limit={limit}"
        return list((await self.get_json(path, headers))["events"])

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics") as response:
            assert response.status == 200
            return await response.text()

    async def attempts(self, component: str | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(attempts, self.db_path, component)

    async def audit(self, event: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(audit_events, self.audit_path, event)

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.session.close()
            await self.runner.cleanup()


async def start_app(config: AppConfig, token: str | None = TOKEN) -> RunningApp:
    from recovery_webhook.app import make_app

    app = make_app(config, token=token)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    return RunningApp(config, app, runner, f"http://{host}:{port}", app[api.TOKEN], session)


# -- the stand-in validation service, a real process ------------------------------


class StandIn:
    """The stand-in validation service on a fixed port, as a separate process."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.pidfile = directory / f"standin-{self.port}.pid"
        self.starts_file = directory / f"standin-{self.port}.starts"
        self.url = f"http://127.0.0.1:{self.port}/health"
        self._process: subprocess.Popen[bytes] | None = None

    def argv(self, detach: bool = False) -> list[str]:
        argv = [PYTHON, str(STANDIN), "--port", str(self.port), "--pidfile", str(self.pidfile)]
        argv += ["--starts-file", str(self.starts_file)]
        return [*argv, "--detach"] if detach else argv

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def starts(self) -> int:
        try:
            return len(self.starts_file.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self._process = process
        wait_until_sync(
            lambda: self.pid == process.pid and port_answers(self.port),
            message="the stand-in validation service answers",
        )

    def kill(self) -> int:
        """SIGKILL the running instance, as a crash would; return its pid."""
        pid = self.pid
        assert pid is not None, "the stand-in is not running"
        os.kill(pid, signal.SIGKILL)
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout=5)
            self._process = None
        else:
            wait_until_sync(lambda: not _alive(pid), message=f"pid {pid} is gone")
        wait_until_sync(lambda: not port_answers(self.port), message="the port is closed")
        return pid

    def cleanup(self) -> None:
        pid = self.pid
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=5)
            self._process = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A detached instance is not our child: a zombie of it is reaped by init.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class MonitorProcess:
    """``pipeline-monitor run`` as a child process, as an operator runs it: with a
    config file, a state directory and PIPELINE_API_TOKEN; killable for real."""

    def __init__(
        self,
        tmp_path: Path,
        config: Path,
        state_dir: Path,
        env: dict[str, str] | None = None,
        name: str = "monitor",
    ) -> None:
        self.tmp_path, self.config, self.state_dir = tmp_path, config, state_dir
        self.extra_env = env or {}
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        log = (self.tmp_path / f"{self.name}-{self.starts}.log").open("wb")
        env = {
            **os.environ,
            "PIPELINE_STATE_DIR": str(self.state_dir),
            "PIPELINE_API_TOKEN": TOKEN,
            **self.extra_env,
        }
        self.process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "pipeline-monitor"),
            "run",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        await wait_until(self._answers, timeout=30, message="pipeline-monitor answers")

    async def _answers(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"pipeline-monitor exited: {self.log()}")
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(self.url + "/healthz") as response:
                    return response.status == 200
        except aiohttp.ClientError:
            return False

    def log(self) -> str:
        path = self.tmp_path / f"{self.name}-{self.starts}.log"
        return path.read_text(errors="replace")[-3000:]

    async def get(self, path: str) -> dict[str, Any]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            async with session.get(self.url + path) as response:
                assert response.status == 200, await response.text()
                return dict(await response.json())

    async def post_alerts(
        self, *alerts: dict[str, Any], session: aiohttp.ClientSession | None = None
    ) -> dict[str, Any]:
        if session is None:
            async with aiohttp.ClientSession() as own:
                return await self.post_alerts(*alerts, session=own)
        async with session.post(
            f"{self.url}/api/alertmanager/webhook",
            json=payload(*alerts),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def component(self, name: str) -> str:
        return str((await self.get("/api/pipeline/status"))["components"][name])

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await self.process.wait() == -signal.SIGKILL

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
