"""`make run` on a clean clone with no config: the demo pipeline shows the whole loop.

A fresh `git clone` of this repository, and in it bench/first_run.py: `make run`
with nothing configured (HOME is a new directory, no PIPELINE_* variable), then
the break command `make run` printed. All five components must become healthy,
the break must turn the page red, and the page must turn green again by itself:
through Prometheus, Alertmanager, the webhook and the demo's repair, recorded in
the history. Ctrl-C must then leave nothing running.

The clone uses this checkout's venv (installing a new one would download every
dependency again): `make -o` keeps make from rebuilding it, and PYTHONPATH puts
the clone's code before this checkout's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, free_port

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
def test_make_run_on_a_clean_clone_shows_the_whole_loop(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    venv = Path(sys.executable).parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "XDG_"))}
    env.pop("DATABASE_URL", None)
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(clone))
    if os.environ.get("PIPELINE_LOCAL_SERVERS"):  # `make test` was told to use its own servers
        env["PIPELINE_LOCAL_SERVERS"] = os.environ["PIPELINE_LOCAL_SERVERS"]
    ports = [str(free_port()) for _ in range(3)]
    done = subprocess.run(
        [
            sys.executable,
            str(clone / "bench" / "first_run.py"),
            "--quiet",
            *("--port", ports[0], "--prometheus-port", ports[1], "--alertmanager-port", ports[2]),
            "--",
            f"VENV={venv}",
            "-o",
            f"{venv}/bin/pipeline-monitor",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "first-run: components: network, validation_service, database, storage, queue"
        in done.stdout
    ), done.stdout
    assert "first-run: stopped; nothing listening" in done.stdout
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "processes of the demo are still running"
