#!/usr/bin/env python3
"""A newcomer's first `make run`, timed: up, green, broken, green again, stopped.

    python3 bench/first_run.py [--port 8000] [--prometheus-port 9090]
                               [--alertmanager-port 9093] [-- MAKE_ARGS...]

Runs `make run` in this checkout with nothing configured (no PIPELINE_* variable,
so the demo pipeline starts), waits until the page is green, runs the break
command `make run` printed, and times the page turning red and green again; then
Ctrl-C, and checks that nothing is left listening. Only the standard library, so
it runs on a machine that has just Python (bench/bare_debian.sh runs it there).

Prints one line per figure (seconds since `make run` started, or since the break).
Exit 1 when a step does not happen within its bound.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def until(condition: Any, bound: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < bound:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the monitor's port")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("make_args", nargs="*", help="more arguments for make (after --)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    if os.environ.get("PIPELINE_LOCAL_SERVERS"):
        env["PIPELINE_LOCAL_SERVERS"] = os.environ["PIPELINE_LOCAL_SERVERS"]
    monitor = f"http://127.0.0.1:{args.port}"
    make = ["make", "--no-print-directory", *args.make_args]
    started = time.monotonic()
    process = subprocess.Popen(
        [
            *make,
            "run",
            f"ARGS=--port {args.port} --prometheus-port {args.prometheus_port}"
            f" --alertmanager-port {args.alertmanager_port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            sys.stdout.write(f"  | {line}")
            if "Ctrl-C stops everything" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    figures: dict[str, float] = {}
    ok = False
    try:
        if not up.wait(900):
            print("first-run: make run did not come up", file=sys.stderr)
            return 1
        figures["make run: stack up (s)"] = time.monotonic() - started
        found = re.search(r"^Try it: `([^`]+)`", "".join(lines), re.M)
        if not found:
            print("first-run: make run printed no break command", file=sys.stderr)
            return 1

        def state() -> str | None:
            message = get_json(f"{monitor}/api/pipeline/editor-message")
            return message["state"] if message else None

        if until(lambda: state() == "operational", 120) is None:
            print("first-run: the page did not turn green", file=sys.stderr)
            return 1
        figures["make run: page green (s)"] = time.monotonic() - started
        command = shlex.split(found.group(1))
        if command[0] == "make":
            command = [*make, *command[1:]]
        broken = time.monotonic()
        subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=60)
        if until(lambda: state() == "down", 60) is None:
            print("first-run: the page did not turn red", file=sys.stderr)
            return 1
        figures["break: page red (s)"] = time.monotonic() - broken
        if until(lambda: state() == "operational", 120) is None:
            print("first-run: the page did not turn green again", file=sys.stderr)
            return 1
        figures["break: page green again (s)"] = time.monotonic() - broken
        ok = True
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(120)
    stopped = True
    for port in (args.port, args.prometheus_port, args.alertmanager_port):
        with socket.socket() as sock:
            stopped &= sock.connect_ex(("127.0.0.1", port)) != 0
    for name, value in figures.items():
        print(f"first-run: {name:<30} {value:7.1f}")
    print(f"first-run: {'stopped, nothing listening':<30} {'yes' if stopped else 'NO'}")
    return 0 if ok and stopped else 1


if __name__ == "__main__":
    sys.exit(main())
