#!/usr/bin/env python3
"""Failover: the monitor holding a repair is killed mid-repair; how long until
the other monitor of the group has repaired the component, verified?

Usage (from the repository root, with the project's venv):

    .venv/bin/python bench/failover.py [--rounds 5] [--lease-ttl 10]

Two ``pipeline-monitor run`` processes share a throwaway PostgreSQL store (a
database of its own on the server of PIPELINE_TEST_POSTGRES_DSN, default
postgresql://postgres@127.0.0.1:5432/postgres, dropped afterwards), with
``recovery.lease_ttl`` as given and a check interval of 1 s. They watch a
stand-in validation service (this script, in a role), which each round:

1. is killed (SIGKILL); both monitors see it down;
2. is reported by an alert posted to both monitors, as two Alertmanagers do;
3. gets a repair ``command`` that hangs (it would take a minute) on the monitor
   that holds the component's lease;
4. loses that monitor: SIGKILL, mid-action; the clock starts;
5. is repaired by the other monitor, once the lease has expired (its repair
   command now starts the service at once); the clock stops when the store holds
   that monitor's successful attempt, verified by its re-probe.

The killed monitor is started again for the next round. Prints each round and
the median; the aim is a median under lease_ttl + 5 s. Also checks that no two
repair commands ever ran at once (each writes when it starts and ends; a killed
one's end is written by its SIGTERM handler, sent by the dead monitor's watcher).
Exit status 0 when every round completed and the check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchlib import (
    BenchError,
    Children,
    free_port,
    history,
    interrupt_on,
    machine,
    say,
    tail,
    throwaway_database,
    wait_healthy,
)

TOKEN = "failover-bench-token-0123456789"
NAMES = ("monitor-a", "monitor-b")
# The repair: note its start, wait as long as the slow file says, start the
# stand-in, note its end; a SIGTERM (its monitor's watcher) notes the end too.
REPAIR = """
import os, signal, subprocess, sys, time
record, slow, *standin = sys.argv[1:]
def note(what):
    with open(record, "a") as f:
        f.write(f"{what} {time.time():.6f} {os.getpid()}\\n")
def ended(*_):
    note("end-killed")
    sys.exit(143)
signal.signal(signal.SIGTERM, ended)
note("start")
time.sleep(float(open(slow).read()))
subprocess.Popen(standin, start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
note("end")
"""


def role_standin(port: int) -> None:
    """The stand-in validation service: GET /health answers 200."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    ThreadingHTTPServer(("127.0.0.1", port), Health).serve_forever()


class Bench:
    def __init__(self, tmp: Path, store: str, lease_ttl: float) -> None:
        self.tmp = tmp
        self.store = store
        self.lease_ttl = lease_ttl
        self.children = Children(tmp, __file__)
        self.standin_port = free_port()
        self.ports = {name: free_port() for name in NAMES}
        self.monitors: dict[str, subprocess.Popen[bytes]] = {}
        self.record = tmp / "repairs.record"
        self.slow = tmp / "repair.slow"

    def standin_argv(self) -> list[str]:
        return [
            sys.executable,
            str(Path(__file__).resolve()),
            "--role",
            "standin",
            "--port",
            str(self.standin_port),
        ]

    def config(self, name: str) -> Path:
        data = {
            "check_interval": 1,
            "components": {
                "validation_service": {
                    "probes": [
                        {
                            "type": "http",
                            "url": f"http://127.0.0.1:{self.standin_port}/health",
                            "timeout": 0.5,
                        }
                    ]
                }
            },
            "audit": {"file": str(self.tmp / f"{name}.audit.log")},
            "recovery": {
                "retry_delay": "1s",
                "max_attempts": 1000,
                "verify_timeout": "10s",
                "verify_interval": "0.1s",
                "lease_ttl": self.lease_ttl,
                "rules": [
                    {
                        "alertname": "PipelineComponentDown",
                        "component": "validation_service",
                        "actions": [
                            {
                                "type": "command",
                                "argv": [
                                    sys.executable,
                                    "-c",
                                    REPAIR,
                                    str(self.record),
                                    str(self.slow),
                                    *self.standin_argv(),
                                ],
                                "timeout": "120s",
                            }
                        ],
                    }
                ],
            },
        }
        path = self.tmp / f"{name}.yml"
        path.write_text(json.dumps(data))  # JSON is YAML
        return path

    def start_monitor(self, name: str) -> None:
        script = Path(sys.executable).parent / "pipeline-monitor"
        argv = [
            str(script),
            "run",
            "--config",
            str(self.config(name)),
            "--port",
            str(self.ports[name]),
        ]
        env = {
            "PIPELINE_STATE_DIR": str(self.tmp / f"{name}.state"),
            "PIPELINE_API_TOKEN": TOKEN,
            "PIPELINE_HISTORY_URL": self.store,
            "PIPELINE_INSTANCE": name,
        }
        process = self.children.spawn(name, argv, env=env)
        self.monitors[name] = process
        wait_healthy(self.ports[name], process, name, self.children.log(name))

    def status(self, name: str) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.ports[name]}/api/pipeline/status"
        with urllib.request.urlopen(url, timeout=5) as answer:
            data: dict[str, object] = json.loads(answer.read())
        return data

    def wait(self, what: str, condition: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if condition():  # type: ignore[operator]
                    return
            time.sleep(0.05)
        logs = "; ".join(f"{n}: {tail(self.children.log(n), 3)}" for n in NAMES)
        raise BenchError(
            f"{what} did not happen within {timeout:g} s (attempts {self.attempts()}); {logs}"
        )

    def seen(self, status: str) -> bool:
        return all(
            self.status(name)["components"]["validation_service"] == status  # type: ignore[index]
            for name in self.monitors
        )

    def post_alert(self) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        alert = {
            "status": "firing",
            "labels": {
                "alertname": "PipelineComponentDown",
                "component": "validation_service",
                "severity": "critical",
            },
            "annotations": {},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": f"failover{time.time_ns():x}"[-32:],
        }
        body = json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()
        for name in self.monitors:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.ports[name]}/api/alertmanager/webhook",
                data=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.status != 200:
                    raise BenchError(f"{name} answered {answer.status}")

    def attempts(self) -> list[tuple[str, str, str]]:
        with history(self.store) as db:
            rows = db.execute(
                "SELECT attempt_id, status, monitor FROM attempts ORDER BY started_at"
            ).fetchall()
        return [tuple(r) for r in rows]

    def round(self, standin: int) -> tuple[float, int]:
        """One kill of the lease holder; the seconds to the other's repair, and
        the pid of the stand-in that repair started."""
        self.slow.write_text("60")
        kill_and_wait(standin)
        self.wait("both monitors see the service down", lambda: self.seen("unhealthy"), 30)
        before = {a for a, _, _ in self.attempts()}
        self.post_alert()
        running: list[tuple[str, str, str]] = []

        commands = self.commands_started()

        def started() -> bool:
            # The attempt is written before its command starts: wait for both, or
            # the command could read the slow file after it is set to 0 below.
            running[:] = [a for a in self.attempts() if a[1] == "running" and a[0] not in before]
            return bool(running) and self.commands_started() > commands

        self.wait("a repair starts", started, 30)
        holder = running[0][2]
        self.slow.write_text("0")
        victim = self.monitors.pop(holder)
        killed = time.monotonic()
        victim.kill()
        victim.wait()
        other = next(iter(self.monitors))

        def repaired() -> bool:
            return any(
                status == "success" and monitor == other and a not in before
                for a, status, monitor in self.attempts()
            )

        self.wait("the other monitor repairs it", repaired, self.lease_ttl + 60)
        took = time.monotonic() - killed
        self.start_monitor(holder)
        new_standin = self.find_standin()
        self.wait("both monitors see the service up", lambda: self.seen("healthy"), 30)
        return took, new_standin

    def find_standin(self) -> int:
        """The pid of the stand-in the repair started (not a child of ours)."""
        out = subprocess.run(
            ["pgrep", "-f", "--", f"--role standin --port {self.standin_port}$"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if not out:
            raise BenchError("the repaired stand-in is not running")
        return int(out[0])

    def commands_started(self) -> int:
        if not self.record.exists():
            return 0
        return sum(line.startswith("start ") for line in self.record.read_text().splitlines())

    def overlaps(self) -> list[str]:
        started: dict[str, float] = {}
        runs: list[tuple[float, float]] = []
        for line in self.record.read_text().splitlines():
            what, at, pid = line.split()
            if what == "start":
                started[pid] = float(at)
            else:
                runs.append((started.pop(pid), float(at)))
        runs.sort()
        return [
            f"{a}-{b} and {c}-{d}" for (a, b), (c, d) in zip(runs, runs[1:], strict=False) if c < b
        ]


def kill_and_wait(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # our child the first time; later, the repair's
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return  # ended, waiting for a parent that is not us
        time.sleep(0.02)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="kills to time (default 5)")
    parser.add_argument(
        "--lease-ttl", type=float, default=10.0, help="recovery.lease_ttl in seconds (default 10)"
    )
    parser.add_argument("--role", choices=["standin"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "standin":
        role_standin(args.port)
        return 0
    if args.rounds < 1 or args.lease_ttl < 1:
        parser.error("--rounds must be at least 1 and --lease-ttl at least 1 s")
    interrupt_on(signal.SIGTERM)
    say(f"failover: {args.rounds} rounds, lease_ttl {args.lease_ttl:g} s, check interval 1 s")
    say(machine().line())
    times: list[float] = []
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="failover-")))
            store = stack.enter_context(throwaway_database())
            bench = Bench(tmp, store, args.lease_ttl)
            stack.callback(bench.children.close)
            standin = bench.children.spawn("standin", bench.standin_argv())
            for name in NAMES:
                bench.start_monitor(name)
            bench.wait("both monitors see the service up", lambda: bench.seen("healthy"), 30)
            current = standin.pid
            for number in range(1, args.rounds + 1):
                took, current = bench.round(current)
                times.append(took)
                say(f"round {number}: repaired by the other monitor {took:.2f} s after the kill")
            overlaps = bench.overlaps()
            kill_and_wait(current)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BenchError as exc:
        say(f"failover: {exc}")
        return 1
    median = statistics.median(times)
    aim = args.lease_ttl + 5
    say()
    say(f"median {median:.2f} s (min {min(times):.2f}, max {max(times):.2f}) over {len(times)}")
    say(f"aim: under lease_ttl + 5 s = {aim:g} s: {'OK' if median < aim else 'MISSED'}")
    say(f"no two repair commands at once: {'OK' if not overlaps else 'MISSED ' + str(overlaps)}")
    return 0 if not overlaps else 1


if __name__ == "__main__":
    sys.exit(main())
