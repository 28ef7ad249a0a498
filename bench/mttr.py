#!/usr/bin/env python3
"""MTTR: how soon the whole loop notices a crashed service, repairs it and says so.

Usage (from the repository root, with the project's venv):

    .venv/bin/python bench/mttr.py [--rounds 5] [--profile fast] [--check-interval 0.25]
    .venv/bin/python bench/mttr.py --rounds 1       # a smoke run (figures not worth quoting)

One run starts, on loopback, in a temporary directory:

* stand-ins of the validation service (tests/recovery/standin_service.py), each a
  process of its own answering GET /health, each the only probe of one
  component of the monitor (``validation_1``, ``validation_2``...);
* the monitor, ``pipeline-monitor run``, probing them every ``--check-interval``
  seconds, with a recovery rule per component: a ``command`` action that starts
  the stand-in again (its restart, as the e2e tests' restartable service);
* ``prometheus-blackbox-exporter`` probing the same URLs (module ``http_2xx``);
* one Prometheus on the fast profile (deploy/prometheus-fast.yml and
  alert_rules-fast.yml, rendered by deploy/localstack.py, resend delay 4s)
  scraping the monitor and the blackbox exporter, with one extra rule,
  ``BlackboxProbeFailed: probe_success == 0``, whose ``for:`` is
  PipelineComponentDown's in alert_rules-fast.yml, labelled with the component;
* one Alertmanager with deploy/alertmanager.yml (rendered by localstack), the
  timing of its recovery-webhook route divided by 15 as the rest of the fast
  profile (group_wait 0s, group_interval 4s, repeat_interval 1m) on every route;
  the blackbox alert goes to a capture webhook of this script, same timing.

Each round SIGKILLs one stand-in, at a random phase of the probe, scrape and
evaluation cycles, and times from that moment:

    noticed by the probe     the monitor's probe found it down (its history)
    firing at the webhook    the monitor received PipelineComponentDown (its history)
    blackbox firing          the capture webhook received BlackboxProbeFailed
    repair finished          the repair attempt ended, successful (its history)
    healthy on /metrics      pipeline_component_up is 1 again (polled every 50 ms)
    resolved at the webhook  the monitor received the alert's resolution (history)

Every round has a component of its own: a round reusing the previous round's
component would join the Alertmanager group that the last incident left (it
lives on for up to 30 s after its resolution) and wait for its group_interval
instead of group_wait, which is a flap, not a fresh incident.

Two kinds of rounds, ``--rounds`` of each, alternating:

* MTTR rounds: the whole chain as in production. Our repair often brings the
  service back before blackbox_exporter's alert is due (its ``for:`` has not run
  out), so blackbox_exporter's detection is only sometimes seen; the run counts
  how often it was pre-empted.
* detection rounds: the same, but the restart waits (a gate file) until both
  alerts have arrived, so that both detections are timed on the same fault.
  The difference is paired per round.

It prints every round, the median, minimum and maximum of each stage, and the
aims: our detection within 1 s of blackbox_exporter's, fault-to-healthy under
10 s (median). The aims are printed beside the figures, not enforced. Exit
status: 0 when every round completed, 1 when one did not or the stack could not
start, 130 when interrupted. Every process this run started is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from benchlib import REPO, BenchError, free_port, interrupt_on, machine, say, tail

sys.path.insert(0, str(REPO / "deploy"))
import localstack  # noqa: E402 - deploy/ is not a package

STANDIN = REPO / "tests" / "recovery" / "standin_service.py"
FAST_RULES = REPO / "deploy" / "alert_rules-fast.yml"
ALERT = "PipelineComponentDown"
BLACKBOX_ALERT = "BlackboxProbeFailed"
# deploy/alertmanager.yml's recovery-webhook route (0s / 1m / 15m), divided by 15.
AM_TIMING = {"group_wait": "0s", "group_interval": "4s", "repeat_interval": "1m"}
ROUND_DEADLINE = 60.0
POLL = 0.05
# The restart of the detection rounds' services: wait while the gate file exists.
GATED = (
    "import os, subprocess, sys, time\n"
    "while os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
    "sys.exit(subprocess.call(sys.argv[2:]))\n"
)


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome = condition()
        except OSError:
            outcome = None
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:g}s")
        time.sleep(POLL)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Capture:
    """The blackbox alert's webhook: keeps (arrival time, alert) for each alert sent."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()
                for alert in json.loads(body).get("alerts", []):
                    capture.alerts.append((at, alert))

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/blackbox"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def first(self, component: str, status: str, after: float) -> float | None:
        return next(
            (
                at
                for at, alert in list(self.alerts)
                if alert["status"] == status
                and alert["labels"].get("component") == component
                and at > after
            ),
            None,
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Service:
    """One stand-in validation service and the component that watches it."""

    component: str
    port: int
    pidfile: Path
    gate: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def start_argv(self) -> list[str]:
        return [
            sys.executable,
            str(STANDIN),
            "--port",
            str(self.port),
            "--pidfile",
            str(self.pidfile),
            "--detach",
        ]

    def restart_argv(self) -> list[str]:
        if self.gate is None:
            return self.start_argv()
        return [sys.executable, "-c", GATED, str(self.gate), *self.start_argv()]

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


@dataclass
class Round:
    kind: str
    component: str
    fault: float
    phase: float = 0.0
    noticed: float | None = None
    firing: float | None = None
    blackbox: float | None = None
    repaired: float | None = None
    healthy: float | None = None
    resolved: float | None = None
    seen_down: bool = False
    attempt: dict[str, Any] = field(default_factory=dict)

    def complete(self) -> bool:
        return None not in (self.noticed, self.firing, self.repaired, self.healthy, self.resolved)

    def span(self, start: str, end: str) -> float | None:
        a, b = getattr(self, start), getattr(self, end)
        return None if a is None or b is None else float(b) - float(a)


class Bench:
    def __init__(self, work: Path, rounds: int, check_interval: float) -> None:
        self.work = work
        self.check_interval = check_interval
        self.token = os.urandom(16).hex()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.capture = Capture()
        self.sink = localstack.SlackSink(echo=None)
        self.services: list[Service] = []
        for number in range(1, rounds + 1):
            for kind in ("mttr", "detect"):
                name = f"validation_{kind}_{number}"
                gate = work / f"{name}.gate" if kind == "detect" else None
                self.services.append(Service(name, free_port(), work / f"{name}.pid", gate))
        self.monitor_url = ""
        self.prometheus_url = ""
        self.alertmanager_url = ""
        self.for_duration = ""

    # -- start and stop -----------------------------------------------------------------

    def start(self) -> None:
        binaries = {
            "prometheus": localstack.prometheus_binary(),
            "alertmanager": localstack.alertmanager_binary(),
            "blackbox_exporter": localstack.find_binary(
                "prometheus-blackbox-exporter", "blackbox_exporter"
            ),
        }
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise BenchError(
                f"not installed: {', '.join(missing)} (Debian: prometheus,"
                " prometheus-alertmanager, prometheus-blackbox-exporter)"
            )
        self.sink.start()
        for service in self.services:
            subprocess.run(service.start_argv(), check=True, capture_output=True, timeout=20)

        port = free_port()
        self.monitor_url = f"http://127.0.0.1:{port}"
        config = self.work / "pipeline.yml"
        config.write_text(yaml.safe_dump(self.monitor_config()))
        monitor = localstack.start(
            [
                str(Path(sys.executable).with_name("pipeline-monitor")),
                "run",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            self.work / "monitor.log",
            {**os.environ, "PIPELINE_API_TOKEN": self.token},
        )
        self.processes.append(monitor)

        blackbox_address = f"127.0.0.1:{free_port()}"
        blackbox_config = self.work / "blackbox.yml"
        module = {"prober": "http", "timeout": "1s", "http": {"preferred_ip_protocol": "ip4"}}
        blackbox_config.write_text(yaml.safe_dump({"modules": {"http_2xx": module}}))
        blackbox = localstack.start(
            [
                str(binaries["blackbox_exporter"]),
                f"--config.file={blackbox_config}",
                f"--web.listen-address={blackbox_address}",
            ],
            self.work / "blackbox.log",
        )
        self.processes.append(blackbox)

        am_address = f"127.0.0.1:{free_port()}"
        am_config = localstack.render_alertmanager(
            self.work,
            f"{self.monitor_url}/api/alertmanager/webhook",
            self.token,
            self.sink.url,
            self.sink.heartbeat_url,
            AM_TIMING,
        )
        self.add_blackbox_route(am_config)
        am = localstack.start_alertmanager(
            str(binaries["alertmanager"]), am_config, self.work, am_address
        )
        self.processes.append(am)

        prom_address = f"127.0.0.1:{free_port()}"
        prom_config = localstack.render_prometheus(
            self.work, f"127.0.0.1:{port}", am_address, fast=True
        )
        self.add_blackbox_job(prom_config, blackbox_address)
        prom = localstack.start_prometheus(
            str(binaries["prometheus"]), prom_config, self.work, prom_address, fast=True
        )
        self.processes.append(prom)

        self.alertmanager_url = f"http://{am_address}"
        self.prometheus_url = f"http://{prom_address}"
        try:
            localstack.wait_http(f"{self.monitor_url}/healthz", 30, monitor)
            localstack.wait_http(f"http://{blackbox_address}/", 30, blackbox)
            localstack.wait_http(f"{self.alertmanager_url}/-/ready", 30, am)
            localstack.wait_http(f"{self.prometheus_url}/-/ready", 30, prom)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None
        count = len(self.services)
        wait(
            lambda: (
                len(self.query("pipeline_component_up == 1")) == count
                and len(self.query('probe_success{job="blackbox"} == 1')) == count
            ),
            30,
            "Prometheus sees every service up through both exporters",
        )

    def monitor_config(self) -> dict[str, Any]:
        probe = {"type": "http", "timeout": 0.8 * self.check_interval}
        return {
            "check_interval": self.check_interval,
            "state_dir": str(self.work / "state"),
            "audit": {"file": str(self.work / "audit.log")},
            "components": {
                s.component: {"probes": [{**probe, "url": s.url}]} for s in self.services
            },
            "recovery": {
                "max_attempts": 1000,  # a slow round must not end in escalation
                "retry_delay": "1s",
                "verify_timeout": "10s",
                "verify_interval": "0.1s",
                "rules": [
                    {
                        "alertname": [ALERT, "ManualRecovery"],
                        "component": s.component,
                        "actions": [
                            {"type": "command", "name": "restart", "argv": s.restart_argv()}
                        ],
                    }
                    for s in self.services
                ],
            },
        }

    def add_blackbox_job(self, path: Path, exporter: str) -> None:
        """The same services through blackbox_exporter, and its alert with our `for:`."""
        rules = yaml.safe_load(FAST_RULES.read_text())
        ours = next(
            rule
            for group in rules["groups"]
            for rule in group["rules"]
            if rule.get("alert") == ALERT
        )
        self.for_duration = ours["for"]
        alert = {
            "alert": BLACKBOX_ALERT,
            "expr": 'probe_success{job="blackbox"} == 0',
            "for": self.for_duration,
            "labels": {"severity": "critical"},
        }
        rule_file = self.work / "blackbox-rules.yml"
        rule_file.write_text(yaml.safe_dump({"groups": [{"name": "blackbox", "rules": [alert]}]}))
        config = yaml.safe_load(path.read_text())
        config["rule_files"].append(str(rule_file))
        config["scrape_configs"].append(
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [
                    {"targets": [s.url], "labels": {"component": s.component}}
                    for s in self.services
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter},
                ],
            }
        )
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def add_blackbox_route(self, path: Path) -> None:
        config = yaml.safe_load(path.read_text())
        config["route"]["routes"].insert(
            0,
            {
                "receiver": "blackbox-capture",
                "matchers": [f'alertname="{BLACKBOX_ALERT}"'],
                **AM_TIMING,
            },
        )
        config["receivers"].append(
            {
                "name": "blackbox-capture",
                "webhook_configs": [{"url": self.capture.url, "send_resolved": True}],
            }
        )
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def close(self) -> None:
        localstack.stop_all(self.processes)
        for service in self.services:
            pid = service.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.capture.close()
        if getattr(self.sink, "_server", None) is not None:
            self.sink.stop()

    # -- reading the parts --------------------------------------------------------------

    def query(self, expr: str) -> list[Any]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return list(get_json(url)["data"]["result"])

    def up(self, component: str) -> float | None:
        sample = f'pipeline_component_up{{component="{component}"}}'
        for line in get_text(f"{self.monitor_url}/metrics").splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def scrape_phase(self, component: str) -> float:
        """How long after the monitor's scrape blackbox_exporter's of ``component`` comes.

        Both are scraped every second at offsets Prometheus derives from the
        targets' labels; modulo the second, this decides whether a fault reaches
        both alerts in the same evaluation.
        """
        last = {}
        for target in get_json(f"{self.prometheus_url}/api/v1/targets")["data"]["activeTargets"]:
            labels = target["labels"]
            if labels["job"] == "pipeline-monitor" or labels.get("component") == component:
                stamp = re.sub(r"(\.\d{6})\d+", r"\1", target["lastScrape"])
                last[labels["job"]] = datetime.fromisoformat(stamp).timestamp()
        return (last["blackbox"] - last["pipeline-monitor"]) % 1.0

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(get_json(f"{self.monitor_url}/api/pipeline/history?limit={limit}")["events"])

    # -- rounds ---------------------------------------------------------------------------

    def run_round(self, service: Service) -> Round:
        kind = "detect" if service.gate is not None else "mttr"
        if service.gate is not None:
            service.gate.touch()
        # A random phase against the probe, scrape and evaluation cycles.
        time.sleep(random.uniform(0.0, 1.0))
        pid = service.pid()
        if pid is None or self.up(service.component) != 1:
            raise BenchError(f"{service.component} is not up before its round")
        phase = self.scrape_phase(service.component)
        result = Round(kind, service.component, fault=time.time(), phase=phase)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + ROUND_DEADLINE
        while not (result.complete() and (kind == "mttr" or result.blackbox is not None)):
            if time.monotonic() > deadline:
                raise BenchError(f"round did not complete within {ROUND_DEADLINE:g}s: {result}")
            self.observe(result)
            if service.gate is not None and result.firing and result.blackbox:
                service.gate.unlink(missing_ok=True)  # both detected: let the restart run
            time.sleep(POLL)
        return result

    def observe(self, result: Round) -> None:
        now = time.time()
        up = self.up(result.component)
        if up == 0:
            result.seen_down = True
        elif up == 1 and result.seen_down and result.healthy is None:
            result.healthy = now
        if result.blackbox is None:
            result.blackbox = self.capture.first(result.component, "firing", result.fault)
        events = [
            e
            for e in self.history()
            if e.get("component") == result.component and epoch(e["timestamp"]) > result.fault
        ]
        for event in reversed(events):  # oldest first
            if event["type"] == "transition" and event.get("to") == "unhealthy":
                if result.noticed is None:
                    result.noticed = epoch(event["timestamp"])
            elif event["type"] == "alert" and event.get("alertname") == ALERT:
                if event["status"] == "firing" and result.firing is None:
                    result.firing = epoch(event["timestamp"])
                elif event["status"] == "resolved" and result.resolved is None:
                    result.resolved = epoch(event["timestamp"])
            elif event["type"] == "recovery_attempt" and result.repaired is None:
                result.attempt = event
                if event["status"] != "success":
                    raise BenchError(f"the repair failed: {event.get('error_message')}")
                result.repaired = float(event["ended_at"])


# -- the report ---------------------------------------------------------------------------


def versions() -> str:
    found = []
    for name in ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"):
        path = localstack.find_binary(name)
        if path is None:
            continue
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        words = (done.stdout or done.stderr).split()
        found.append(f"{name} {words[2] if len(words) > 2 else '?'}")
    return "versions: " + ", ".join(found)


# (label, start, end): a stage is the time between two moments of a round.
MTTR_STAGES: list[tuple[str, str, str]] = [
    ("fault -> noticed by the probe", "fault", "noticed"),
    ("fault -> firing at the webhook", "fault", "firing"),
    ("firing at the webhook -> repair finished", "firing", "repaired"),
    ("repair finished -> healthy on /metrics", "repaired", "healthy"),
    ("healthy on /metrics -> resolved at the webhook", "healthy", "resolved"),
    ("fault -> repair finished", "fault", "repaired"),
    ("fault -> healthy on /metrics", "fault", "healthy"),
    ("fault -> resolved at the webhook", "fault", "resolved"),
]
DETECTION_STAGES: list[tuple[str, str, str]] = [
    ("fault -> noticed by the probe (ours)", "fault", "noticed"),
    ("fault -> firing at the webhook (ours)", "fault", "firing"),
    ("fault -> firing at the capture (blackbox_exporter)", "fault", "blackbox"),
]
WIDTH = 52


def row(label: str, values: list[float], signed: bool = False) -> str:
    form = "+.2f" if signed else ".2f"
    per_round = " ".join(format(v, form) for v in values)
    return (
        f"{label:<{WIDTH}}{format(statistics.median(values), form):>8}"
        f"{format(min(values), form):>8}{format(max(values), form):>8}   {per_round}"
    )


def stage_values(rounds: list[Round], start: str, end: str) -> list[float]:
    return [v for v in (r.span(start, end) for r in rounds) if v is not None]


def report(rounds: list[Round], say: Callable[[str], None]) -> None:
    header = f"{'median':>8}{'min':>8}{'max':>8}   per round"
    mttr = [r for r in rounds if r.kind == "mttr"]
    detect = [r for r in rounds if r.kind == "detect"]
    say("")
    say(f"{'MTTR rounds (seconds)':<{WIDTH}}{header}")
    for label, start, end in MTTR_STAGES:
        say(row(label, stage_values(mttr, start, end)))
    seen = [r for r in mttr if r.blackbox is not None]
    line = f"blackbox_exporter's alert came in {len(seen)} of {len(mttr)} MTTR rounds"
    if len(seen) < len(mttr):
        line += "; in the others our repair had the service back before its `for:` ran out"
    say(line)
    say("")
    say(f"{'detection rounds, restart held (seconds)':<{WIDTH}}{header}")
    for label, start, end in DETECTION_STAGES:
        say(row(label, stage_values(detect, start, end)))
    paired = [
        float(r.span("fault", "firing") or 0.0) - float(r.span("fault", "blackbox") or 0.0)
        for r in detect
    ]
    say(row("ours - blackbox_exporter, paired", paired, signed=True))
    say(row("blackbox scrape after the monitor's, mod 1 s", [r.phase for r in detect]))

    ours = statistics.median(stage_values(detect, "fault", "firing"))
    theirs = statistics.median(stage_values(detect, "fault", "blackbox"))
    diff = statistics.median(paired)
    healthy = statistics.median(stage_values(mttr, "fault", "healthy"))
    say("")
    say(
        f"detection (medians): ours {ours:.2f} s, blackbox_exporter {theirs:.2f} s,"
        f" difference {diff:+.2f} s (paired)"
    )
    verdict = "met" if diff <= 1.0 else "NOT met"
    say(f"aim: our detection within 1 s of blackbox_exporter's: {diff:+.2f} s ({verdict})")
    verdict = "met" if healthy < 10.0 else "NOT met"
    say(f"aim: fault-to-healthy under 10 s (median): {healthy:.2f} s ({verdict})")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of each kind, MTTR and detection (default 5; 5 or more for figures)",
    )
    parser.add_argument(
        "--profile",
        choices=["fast"],
        default="fast",
        help="Prometheus/Alertmanager profile (fast: 1 s scrapes and evaluations, `for:` / 15)",
    )
    parser.add_argument(
        "--check-interval",
        type=float,
        default=0.25,
        help="the monitor's check interval in seconds (default 0.25)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.check_interval <= 0:
        parser.error("--check-interval must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    interrupt_on(signal.SIGTERM)
    work = Path(tempfile.mkdtemp(prefix="mttr-"))
    bench = Bench(work, args.rounds, args.check_interval)
    say(f"mttr: {args.rounds} MTTR round(s) and {args.rounds} detection round(s)")
    say(machine().line())
    say(versions())
    rounds: list[Round] = []
    try:
        bench.start()
        say(
            f"profile {args.profile}: scrape and evaluation 1s, for: {bench.for_duration},"
            f" resend delay 4s; Alertmanager group_wait {AM_TIMING['group_wait']},"
            f" group_interval {AM_TIMING['group_interval']}; monitor check interval"
            f" {args.check_interval:g}s"
        )
        for service in bench.services:
            result = bench.run_round(service)
            rounds.append(result)
            spans = ", ".join(
                f"{name} {value:.2f} s"
                for name, value in (
                    (name, result.span("fault", name))
                    for name in (
                        "noticed",
                        "firing",
                        "blackbox",
                        "repaired",
                        "healthy",
                        "resolved",
                    )
                )
                if value is not None
            )
            say(f"round {len(rounds)} ({result.kind}, {result.component}): {spans}")
        report(rounds, say)
        if args.rounds < 5:
            say(f"note: {args.rounds} round(s) of each kind: a smoke run, not figures to quote")
        return 0
    except BenchError as exc:
        say(f"mttr: FAILED: {exc}")
        for name in ("monitor.log", "prometheus.log", "alertmanager.log", "blackbox.log"):
            if (work / name).exists():
                say(f"--- {name}: {tail(work / name)}")
        return 1
    except KeyboardInterrupt:
        say("mttr: interrupted")
        return 130
    finally:
        bench.close()
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
