"""``pipeline-monitor run`` under a flood of idle and slow clients, with its
open-file limit lowered to 128: connections are closed after bounded times,
/healthz answers, the probes keep their descriptors (no false "down"), and the
log stays a few lines. Also what it logs of malformed requests and hostile
alert names (no token, no forged line), and the modes of the files it makes
whatever the umask."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from recovery.recovery_support import TOKEN, StandIn, free_port, make_alert, payload, wait_until

pytestmark = pytest.mark.integration

OPEN_FILES = 128
FLOOD = 150  # more client sockets than the process may open files
# Sets the open-file limit (when not 0) and the umask, then becomes the monitor
# (no preexec_fn: the test process has threads).
SHIM = (
    "import os, resource, sys; n = int(sys.argv[1]); os.umask(int(sys.argv[2], 8));"
    " n and resource.setrlimit(resource.RLIMIT_NOFILE, (n, n));"
    " os.execv(sys.argv[3], sys.argv[3:])"
)
RECORD_START = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - ")
RECORD_EVENT = re.compile(r"^\S+ \S+ - [\w.]+ - [A-Z]+ - ([A-Z_]+): ")


class Monitor:
    """``pipeline-monitor run`` with a config, as its own process (limit lowered)."""

    def __init__(self, tmp_path: Path, config: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp_path / "pipeline.yml"
        self.config_path.write_text(json.dumps(config))
        self.log_path = tmp_path / "monitor.log"
        self.state_dir = tmp_path / "state"
        self.process: asyncio.subprocess.Process | None = None

    async def start(
        self, open_files: int | None = OPEN_FILES, umask: int = 0o022, token: str | None = TOKEN
    ) -> None:
        script = str(Path(sys.executable).parent / "pipeline-monitor")
        argv = [script, "run", "--config", str(self.config_path), "--port", str(self.port)]
        argv = [sys.executable, "-c", SHIM, str(open_files or 0), f"{umask:o}", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env["PIPELINE_STATE_DIR"] = str(self.state_dir)
        if token is not None:
            env["PIPELINE_API_TOKEN"] = token
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        await wait_until(self._answers, timeout=30, message="pipeline-monitor answers")

    async def _answers(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"pipeline-monitor exited: {self.log()[-3000:]}")
        try:
            return await self.healthz(timeout=2)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def healthz(self, timeout: float = 15) -> bool:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.get(self.url + "/healthz") as response:
                return response.status == 200

    async def status(self) -> dict:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
            async with s.get(self.url + "/api/pipeline/status") as response:
                return dict(await response.json())

    async def post_alert(self, alert: dict, token: str = TOKEN) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                self.url + "/api/alertmanager/webhook",
                json=payload(alert),
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 200, await response.text()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 30)


@pytest.fixture
async def monitor_factory(tmp_path):
    started: list[Monitor] = []

    async def start(config: dict, open_files: int | None = OPEN_FILES, **options) -> Monitor:
        monitor = Monitor(tmp_path, config)
        started.append(monitor)
        await monitor.start(open_files, **options)
        return monitor

    yield start
    for monitor in started:
        await monitor.stop()


def pipeline(tmp_path: Path, pg_dsn: str, standin: StandIn, **server: object) -> dict:
    return {
        "check_interval": "1s",
        "components": {
            "network": {"probes": [{"type": "tcp", "targets": ["127.0.0.1:5432"]}]},
            "database": {"probes": [{"type": "postgres", "dsn": pg_dsn}]},
            "validation_service": {"probes": [{"type": "http", "url": standin.url}]},
            "storage": {
                "probes": [
                    {"type": "filesystem", "path": str(tmp_path / "files"), "create_missing": True}
                ]
            },
        },
        "server": server,
    }


async def all_healthy(monitor: Monitor) -> bool:
    return set((await monitor.status())["components"].values()) == {"healthy"}


async def open_flood(port: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """FLOOD connections: a third idle, a third mid-headers, a third mid-body."""
    starts = [
        b"",
        b"GET /api/pipeline/status HTTP/1.1\r\nHost: monitor\r\nAccept: */*\r\n",
        b"POST /api/alertmanager/webhook HTTP/1.1\r\nHost: monitor\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"version": ',
    ]

    async def one(index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(starts[index % 3])
        await writer.drain()
        return reader, writer

    return list(await asyncio.gather(*(one(i) for i in range(FLOOD))))


async def closed_by_the_server(reader: asyncio.StreamReader) -> bool:
    try:
        while await reader.read(65536):
            pass  # a 408 or 400 answer first, then the end
    except (ConnectionError, OSError):
        pass
    return True


async def test_a_flood_of_idle_and_slow_clients_starves_nothing(
    monitor_factory, tmp_path, pg_dsn, standin
):
    timeouts = {"keepalive_timeout": "1.5s", "header_timeout": "1.5s", "body_timeout": "1.5s"}
    monitor = await monitor_factory(pipeline(tmp_path, pg_dsn, standin, **timeouts))
    await wait_until(lambda: all_healthy(monitor), timeout=30, message="all components healthy")

    flood = await open_flood(monitor.port)
    try:
        # While the flood holds on, the monitor answers and its probes still run.
        for _ in range(5):
            assert await monitor.healthz(timeout=15)
            status = await monitor.status()
            assert set(status["components"].values()) == {"healthy"}, status["component_details"]
            await asyncio.sleep(0.5)
        # Every one of the flood's connections is closed by the monitor.
        closed = await asyncio.wait_for(
            asyncio.gather(*(closed_by_the_server(reader) for reader, _ in flood)), 60
        )
        assert all(closed)
    finally:
        for _, writer in flood:
            writer.close()
    assert await all_healthy(monitor)

    log = monitor.log()
    assert "Too many open files" not in log
    assert "FAILURE_DETECTED" not in log
    assert "Traceback" not in log
    cap = re.search(r"HTTP server: at most (\d+) connections", log)
    assert cap and int(cap.group(1)) < OPEN_FILES - 32, log[:2000]
    # A few lines about the flood, not one per connection.
    server_lines = [line for line in log.splitlines() if " - recovery_webhook.server - " in line]
    assert len(server_lines) <= 5, server_lines


async def test_a_malformed_request_is_logged_without_its_token(monitor_factory, tmp_path):
    storage = {"probes": [{"type": "filesystem", "path": str(tmp_path), "create_missing": True}]}
    monitor = await monitor_factory({"components": {"storage": storage}}, open_files=None)
    secret = "Bearer s3cr3t-t0ken-in-a-bad-header"
    reader, writer = await asyncio.open_connection("127.0.0.1", monitor.port)
    # A header line ending in a bare LF: aiohttp refuses the request, quoting the line.
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: m\r\nAuthorization: {secret}\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400"), answer
    assert b"s3cr3t" not in answer
    assert b"Server: pipeline-monitor" in answer
    await wait_until(
        lambda: "refused a malformed request" in monitor.log(), message="the refusal is logged"
    )
    log = monitor.log()
    assert "s3cr3t" not in log
    assert "Traceback" not in log


async def test_an_alertname_cannot_forge_a_log_line(monitor_factory, tmp_path):
    storage = {"probes": [{"type": "filesystem", "path": str(tmp_path), "create_missing": True}]}
    monitor = await monitor_factory({"components": {"storage": storage}}, open_files=None)
    forged = (
        "PipelineComponentDown\n2026-01-01 00:00:00,000 - pipeline_monitor.audit - CRITICAL"
        ' - ESCALATION: {"component": "storage"}\x1b[2K\x00\u2028\x85'
    )
    alert = make_alert("storage", alertname=forged, desk="x\nFAILURE_DETECTED: component=db")
    await monitor.post_alert(alert)
    await wait_until(lambda: "ALERT_TRIGGERED" in monitor.log(), message="the alert is logged")
    await monitor.stop()
    raw = monitor.log_path.read_bytes()
    assert b"\x00" not in raw and b"\x1b" not in raw
    text = raw.decode("utf-8")
    lines = text.splitlines()
    assert len(lines) == text.count("\n")  # no line break but "\n"
    assert all(RECORD_START.match(line) for line in lines), [
        line for line in lines if not RECORD_START.match(line)
    ]
    events = [m.group(1) for m in map(RECORD_EVENT.match, lines) if m]
    assert events.count("ALERT_TRIGGERED") == 1, lines
    assert "ESCALATION" not in events and "FAILURE_DETECTED" not in events, lines


def mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
async def test_files_are_private_whatever_the_umask(monitor_factory, tmp_path, umask):
    storage = {"probes": [{"type": "filesystem", "path": str(tmp_path / "files")}]}
    state = tmp_path / "state"
    config = {"components": {"storage": storage}, "audit": {"file": str(state / "audit.log")}}
    monitor = await monitor_factory(config, open_files=None, umask=umask, token=None)
    token = (state / "api-token").read_text().strip()
    await monitor.post_alert(make_alert("storage"), token)
    history = state / "history.sqlite3"
    await wait_until(lambda: Path(f"{history}-wal").exists(), message="the WAL file exists")

    assert mode(state) == "0700"
    files = ["history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm", "api-token",
             "monitor.lock", "audit.log"]  # fmt: skip
    assert {name: mode(state / name) for name in files} == dict.fromkeys(files, "0600")
    await monitor.stop()
    assert monitor.process is not None and monitor.process.returncode == 0, monitor.log()[-2000:]


async def test_files_from_before_are_made_private(monitor_factory, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    history = state / "history.sqlite3"
    for path in (history, Path(f"{history}-wal"), Path(f"{history}-shm")):
        path.touch()
        os.chmod(path, 0o644)
    storage = {"probes": [{"type": "filesystem", "path": str(tmp_path / "files")}]}
    await monitor_factory({"components": {"storage": storage}}, open_files=None)
    assert mode(state) == "0700"
    assert mode(history) == "0600"
    assert all(mode(p) == "0600" for p in state.glob("history.sqlite3*"))
