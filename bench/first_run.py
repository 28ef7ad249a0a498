#!/usr/bin/env python3
"""A newcomer's first `make run`, checked and timed: up, green, broken, green again, stopped.

    python3 bench/first_run.py [--port 8000] [--prometheus-port 9090]
                               [--alertmanager-port 9093] [-- MAKE_ARGS...]

Runs `make run` in this checkout with nothing configured (no PIPELINE_* variable
but PIPELINE_LOCAL_SERVERS, so the demo pipeline starts), waits until every
component is healthy, runs the break command `make run` printed, and waits for
the page to turn red and then green again by itself: the repair must be in the
history, started by an alert, and the alert must have been printed as a Slack
message. Then Ctrl-C, and nothing may be left listening. Only the standard
library, so it runs on a machine that has just Python (bench/bare_debian.sh runs
it there; tests/e2e/test_make_run_demo.py runs it on a fresh clone).

Prints the components and one line per figure (seconds since `make run` started,
or since the break). Exit 1, saying which, when a step does not happen within
its bound.
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


class Failed(Exception):
    pass


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def until(what: str, condition: Any, bound: float) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise Failed(f"{what} did not happen within {bound:g}s")
        time.sleep(0.1)


class FirstRun:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.monitor = f"http://127.0.0.1:{args.port}"
        self.make = ["make", "--no-print-directory", *args.make_args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        if os.environ.get("PIPELINE_LOCAL_SERVERS"):
            self.env["PIPELINE_LOCAL_SERVERS"] = os.environ["PIPELINE_LOCAL_SERVERS"]
        self.lines: list[str] = []
        self.figures: dict[str, float] = {}

    def said(self) -> str:
        return "".join(self.lines)

    def state(self) -> str | None:
        message = get_json(f"{self.monitor}/api/pipeline/editor-message")
        return message["state"] if message else None

    def run(self, process: subprocess.Popen[str], started: float) -> None:
        up = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.append(line)
                if self.args.echo:
                    sys.stdout.write(f"  | {line}")
                if "Ctrl-C stops everything" in line:
                    up.set()

        threading.Thread(target=read, daemon=True).start()
        # The first run may install packages and start throwaway servers.
        if not up.wait(900):
            raise Failed("make run did not come up")
        self.figures["make run: stack up (s)"] = time.monotonic() - started
        found = re.search(r"^Try it: `([^`]+)`", self.said(), re.M)
        if not found:
            raise Failed("make run printed no break command")

        def all_healthy() -> bool:
            status = get_json(f"{self.monitor}/api/pipeline/status")
            return bool(status) and set(status["components"].values()) == {"healthy"}

        until("every component healthy", all_healthy, 120)
        self.figures["make run: all healthy (s)"] = time.monotonic() - started
        status = get_json(f"{self.monitor}/api/pipeline/status")
        print(f"first-run: components: {', '.join(status['components'])}")

        command = shlex.split(found.group(1))
        if command[0] == "make":  # as make is run here (same variables, same options)
            command = [*self.make, *command[1:]]
        broken, broken_at = time.monotonic(), time.time()
        subprocess.run(command, cwd=ROOT, env=self.env, check=True, timeout=60)
        until("the page turning red", lambda: self.state() == "down", 60)
        self.figures["break: page red (s)"] = time.monotonic() - broken
        until("the page turning green again", lambda: self.state() == "operational", 120)
        self.figures["break: page green again (s)"] = time.monotonic() - broken

        history = get_json(f"{self.monitor}/api/pipeline/history?limit=100") or {"events": []}
        repairs = [
            e
            for e in history["events"]
            if e["type"] == "recovery_attempt"
            and e["component"] == "validation_service"
            and e["trigger"] == "alert"
            and e["started_at"] >= broken_at - 1
        ]
        if not (repairs and repairs[0]["success"]):
            raise Failed(f"no successful repair after an alert in the history: {history}")
        # Alertmanager's Slack route may notify after the webhook's repair ended.
        slack = "[slack #publishing-alerts] [FIRING:1] PipelineComponentDown"
        until("the alert printed as a Slack message", lambda: slack in self.said(), 60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the monitor's port")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--quiet", dest="echo", action="store_false", help="hide make's output")
    parser.add_argument("make_args", nargs="*", help="more arguments for make (after --)")
    args = parser.parse_args(argv)
    first = FirstRun(args)
    ports = (args.port, args.prometheus_port, args.alertmanager_port)
    stack_args = (
        f"--port {args.port} --prometheus-port {args.prometheus_port}"
        f" --alertmanager-port {args.alertmanager_port}"
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [*first.make, "run", f"ARGS={stack_args}"],
        cwd=ROOT,
        env=first.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    failure = None
    try:
        first.run(process, started)
    except (Failed, subprocess.SubprocessError) as exc:
        failure = str(exc)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        process.wait(120)
        if process.stdout is not None:
            process.stdout.close()
    listening = []
    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                listening.append(port)
    for name, value in first.figures.items():
        print(f"first-run: {name:<30} {value:7.1f}")
    if failure is None and listening:
        failure = f"still listening after Ctrl-C: {listening}"
    if failure is not None:
        if not args.echo:
            print("make run said:\n" + first.said(), file=sys.stderr)
        print(f"first-run: FAILED: {failure}", file=sys.stderr)
        return 1
    print("first-run: stopped; nothing listening")
    return 0


if __name__ == "__main__":
    sys.exit(main())
