"""Every command the README shows works as shown.

The shell blocks run verbatim except for the port (a free one instead of 8000);
HOME points at a temporary directory, so the README's default token path
(``~/.local/state/pipeline-recovery/api-token``) is the one the monitor writes.
``make test`` is what CI runs; ``make run`` is the local stack, run here for real
(Prometheus, Alertmanager and the monitor) and stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, console_script, free_port, wait_until_sync

pytestmark = pytest.mark.integration

README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def shell_commands() -> list[str]:
    """Each command of the README's sh blocks, continuation lines joined."""
    commands = []
    for block in blocks("sh"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "XDG_"))}
    env.pop("DATABASE_URL", None)
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


@contextlib.contextmanager
def listening_on(*ports: int) -> Iterator[None]:
    """Where nothing listens on one of ``ports``, a listener that holds it meanwhile.

    The built-in config's network component reaches 127.0.0.1:5432 and :5672; on a
    machine whose servers run elsewhere (throwaway test servers on free ports),
    nothing does, and the README's network repair could not succeed.
    """
    held = []
    try:
        for port in ports:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    continue
            listener = socket.socket()
            listener.bind(("127.0.0.1", port))
            listener.listen(64)  # the kernel completes the handshakes; no accept needed
            held.append(listener)
        yield
    finally:
        for listener in held:
            listener.close()


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The README's monitor: built-in config, default state directory under HOME."""
    port = free_port()
    env = clean_env(tmp_path)
    with listening_on(5432, 5672):
        yield from _run_monitor(port, env)


def _run_monitor(port: int, env: dict[str, str]) -> Iterator[tuple[int, dict[str, str]]]:
    process = subprocess.Popen(
        [console_script(), "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_sync(lambda: get(f"http://127.0.0.1:{port}/healthz") == 200, timeout=30)
        yield port, env
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_readme_shows_the_two_quick_start_commands() -> None:
    commands = shell_commands()
    assert commands[:2] == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run: .*\n\t\$\(BIN\)/python deploy/localstack\.py", makefile, re.M)
    assert "exec make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_curl_commands_work_as_shown(monitor: tuple[int, dict[str, str]]) -> None:
    port, env = monitor
    curls = [c for c in shell_commands() if c.startswith("curl ")]
    assert len(curls) >= 2
    for command in curls:
        command = command.replace("localhost:8000", f"localhost:{port}")
        done = subprocess.run(
            ["sh", "-c", f"{command} --fail --silent --show-error"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (command, done.stderr)
        answer = json.loads(done.stdout)
        if "/recovery/" in command:
            assert answer["component"] == "network"
            assert answer["success"] is True, answer
        else:
            assert set(answer) >= {"overall_status", "components", "uptime_percentage"}


def test_readme_python_example_runs(tmp_path: Path) -> None:
    (example,) = blocks("python")
    with listening_on(5432, 5672):  # the built-in config's network path
        done = subprocess.run(
            [sys.executable, "-c", example],
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^Overall Status: (healthy|degraded|unhealthy)$", done.stdout, re.M)
    assert re.search(r"^Uptime: [\d.]+%$", done.stdout, re.M), done.stdout
    assert "Publishing Pipeline:" in done.stdout
    assert re.search(r"^Recovery Success: True \(network_\d+\)$", done.stdout, re.M)


def test_make_run_starts_the_local_stack_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """``make run ARGS="--config ... --fast"``, then Ctrl-C (SIGINT to its group)."""
    ports = {name: free_port() for name in ("monitor", "prometheus", "alertmanager")}
    config = tmp_path / "pipeline.yml"
    config.write_text(
        "check_interval: 1\n"
        "components:\n"
        "  network:\n"
        "    probes: [{type: tcp, targets: ['127.0.0.1:5432']}]\n",
        encoding="utf-8",
    )
    env = {**clean_env(tmp_path), "PIPELINE_STATE_DIR": str(tmp_path / "state")}
    args = (
        f"--config {config} --fast --no-install --port {ports['monitor']}"
        f" --prometheus-port {ports['prometheus']} --alertmanager-port {ports['alertmanager']}"
    )
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"ARGS={args}", f"PYTHON={sys.executable}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(lines)
        assert "local stack is up" in text, text
        # With a config file no demo runs.
        assert "demo" not in text, text
        assert not (tmp_path / "state" / "demo").exists()
        for name, port in ports.items():
            assert f"127.0.0.1:{port}" in text, (name, text)
        assert get(f"http://127.0.0.1:{ports['monitor']}/healthz") == 200
        assert get(f"http://127.0.0.1:{ports['prometheus']}/-/ready") == 200
        assert get(f"http://127.0.0.1:{ports['alertmanager']}/-/ready") == 200

        # Prometheus scrapes the monitor through the rendered config.
        def scraped() -> bool:
            url = (
                f"http://127.0.0.1:{ports['prometheus']}/api/v1/query?"
                "query=up%7Bjob%3D%22pipeline-monitor%22%7D"
            )
            with urllib.request.urlopen(url, timeout=2) as response:
                result = json.load(response)["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"

        wait_until_sync(scraped, timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    # make dies of the SIGINT as a shell job does; the stack below it shut down.
    assert code in (0, -signal.SIGINT), code
    for port in ports.values():
        assert get(f"http://127.0.0.1:{port}/-/healthy") == 0, f"something still on {port}"
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "processes of the stack are still running"
