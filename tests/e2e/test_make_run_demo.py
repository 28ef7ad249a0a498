"""`make run` on a clean clone with no config: the demo pipeline shows the whole loop.

A fresh `git clone` of this repository, `make run` in it with nothing configured
(HOME is a new directory, no PIPELINE_* variable), then the break command that
`make run` printed. All five components must become healthy, the break must turn
the page red, and the page must turn green again by itself: through Prometheus,
Alertmanager, the webhook and the demo's repair, recorded in the history. Ctrl-C
must then leave nothing running.

The clone uses this checkout's venv (installing a new one would download every
dependency again): `make -o` keeps make from rebuilding it, and PYTHONPATH puts
the clone's code before this checkout's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, free_port

pytestmark = pytest.mark.e2e

COMPONENTS = {"network", "validation_service", "database", "storage", "queue"}


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def wait(what: str, condition: Any, timeout: float, log: list[str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    said = "".join(log)
    raise AssertionError(f"{what} did not happen within {timeout:g}s; make run said:\n{said}")


@pytest.mark.timeout(600)
def test_make_run_on_a_clean_clone_shows_the_whole_loop(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    venv = Path(sys.executable).parent.parent
    make = ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/bin/pipeline-monitor"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "XDG_"))}
    env.pop("DATABASE_URL", None)
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(clone))
    if os.environ.get("PIPELINE_LOCAL_SERVERS"):  # `make test` was told to use its own servers
        env["PIPELINE_LOCAL_SERVERS"] = os.environ["PIPELINE_LOCAL_SERVERS"]
    ports = {name: free_port() for name in ("monitor", "prometheus", "alertmanager")}
    args = (
        f"--port {ports['monitor']} --prometheus-port {ports['prometheus']}"
        f" --alertmanager-port {ports['alertmanager']}"
    )
    monitor = f"http://127.0.0.1:{ports['monitor']}"
    process = subprocess.Popen(
        [*make, "run", f"ARGS={args}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    log: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if "Ctrl-C stops everything" in line:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The first run may install the demo's servers and start throwaway ones.
        assert up.wait(300), "make run did not come up:\n" + "".join(log)
        text = "".join(log)
        assert "The demo pipeline (no config was given" in text, text
        found = re.search(r"^Try it: `([^`]+)`", text, re.M)
        assert found, text
        command = shlex.split(found.group(1))

        def all_healthy() -> bool:
            status = get_json(f"{monitor}/api/pipeline/status")
            return bool(status) and status["components"] == dict.fromkeys(COMPONENTS, "healthy")

        wait("all five components healthy", all_healthy, 60, log)

        # The printed command, run as make is run here (same venv, nothing rebuilt).
        if command[0] == "make":
            command = [*make, *command[1:]]
        broke = subprocess.run(
            command, cwd=clone, env=env, capture_output=True, text=True, timeout=60
        )
        assert broke.returncode == 0, broke
        broken_at = time.time()

        def state() -> str | None:
            message = get_json(f"{monitor}/api/pipeline/editor-message")
            return message["state"] if message else None

        wait("the page turning red", lambda: state() == "down", 60, log)
        wait("the page turning green again", lambda: state() == "operational", 120, log)

        history = get_json(f"{monitor}/api/pipeline/history?limit=100")
        repairs = [
            e
            for e in history["events"]
            if e["type"] == "recovery_attempt"
            and e["component"] == "validation_service"
            and e["trigger"] == "alert"
            and e["started_at"] >= broken_at - 1
        ]
        assert repairs and repairs[0]["success"] is True, history
        # Alertmanager's Slack route may notify after the webhook's repair ended.
        slack = "[slack #publishing-alerts] [FIRING:1] PipelineComponentDown"
        wait("the alert printed as a Slack message", lambda: slack in "".join(log), 60, log)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = process.wait(60)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
    assert code in (0, -signal.SIGINT), (code, "".join(log))
    for port in ports.values():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "processes of the demo are still running"
