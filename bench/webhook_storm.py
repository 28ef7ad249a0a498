#!/usr/bin/env python3
"""Webhook storm: Alertmanager notifications at a rate no real Alertmanager sends.

Usage (from the repository root, with the project's venv):

    .venv/bin/python bench/webhook_storm.py [--notifications 500] [--alerts 10000]
                                            [--concurrency 50] [--repeats 10] [--runs 1]
    .venv/bin/python bench/webhook_storm.py --quick    # a smoke run: 100 notifications
    .venv/bin/python bench/webhook_storm.py --store postgres --monitors 2

The storm is Alertmanager's own shape: alert groups, each notified ``--repeats``
times with its full alert list (version 4 payloads, fingerprints, startsAt), so
every distinct alert arrives ``--repeats`` times. With the defaults, 50 groups of
20 alerts make 1,000 distinct alerts across the five seed components, sent in
500 notifications carrying 10,000 alerts in all. Some alerts end resolved in
their group's last two notifications (every tenth group wholly, so its
notifications are ``status: resolved``); a fifth of the groups are
``PipelineComponentDegraded``, which no recovery rule matches, so they are
recorded and repair nothing.

Every party runs in its own process:

* the real service, ``pipeline-monitor run`` with its default settings (log
  level INFO, no access log: as in production), a temporary state directory,
  ``PIPELINE_API_TOKEN`` and a config whose components are TCP probes of a
  closed port (so every component is down and no repair is skipped as "not
  needed"), and one recovery rule for ``PipelineComponentDown`` running a real
  ``command`` action, ``["true"]``. ``true`` cannot bring a port up, so each
  repair ends ``failure`` after its re-probe; ``max_attempts`` is set out of
  reach and ``retry_delay`` to an hour, so nothing escalates or retries within
  the run and each repair stays the one its alert started;
* a bare aiohttp server whose handler reads the body and answers 200, the
  floor for any aiohttp webhook;
* the client, one aiohttp ``ClientSession`` keeping ``--concurrency`` requests in
  flight over keep-alive connections; it runs the same storm against each server
  (bare first) and times every request from send to the last byte read.

After the storm the run waits until no repair is queued or running, scrapes
/metrics, stops the service (SIGTERM: a clean stop, which also writes the
delivery counts of repeats that the service keeps in memory for up to half a
second) and reads its SQLite history:

* **every alert recorded**: one ``alerts`` row per distinct alert, each with
  ``notifications`` equal to the times it was sent and the status it ended in;
  one ``alert`` event per alert that fired and one per alert resolved; the
  webhook's answers add up to what was sent (received, new, duplicates,
  resolved); ``pipeline_alerts_received_total`` counts every alert.
* **exactly one repair per distinct alert**: every distinct firing alert that a
  rule matches (fingerprint + startsAt) ran exactly one repair (``attempts``
  row, trigger ``alert``, its ``true`` command run) — except one that was
  resolved before its turn came in its component's queue (one repair at a time
  per component), which the engine rightly skips; those are counted and shown.
  No alert ran two, no alert without a rule ran one, none was "not needed".

``--store postgres --monitors N`` runs N monitors sharing one PostgreSQL store
(a database of its own on the server of PIPELINE_TEST_POSTGRES_DSN, default
postgresql://postgres@127.0.0.1:5432/postgres, dropped afterwards), and splits
the storm across them as the Alertmanagers of a cluster send it: each alert
group's notifications to one of the monitors (``--split rounds``: each round of a
group's notifications to the next monitor in turn, so that both hear of nearly
every alert and write it first at once, the store's worst case), each monitor's
share sent by a client of its own, all at once. The aims are then p99 under
100 ms and 0.35 of the bare handler's throughput; the checks are the same,
across the group (deliveries and answers add up over the monitors, each alert is
recorded once, and each alert runs exactly one repair whichever monitors heard
it).

``--runs N`` repeats all of it N times, each time with fresh servers and a fresh
state directory, prints every run, then the medians and ranges; the aims are
judged on the median p99 and the median ratio, the checks on every run. One
storm lasts a fraction of a second, so a single run's speed figures move with
whatever else the machine does; five runs give a steadier picture.

Exit status: 0 when every run completed and both checks above held in each (the
speed aims are printed beside the figures, not enforced), 1 when a check failed
or a run could not complete, 130 when interrupted. Linux only (CPU time from /proc).
Every child is stopped on exit, and dies with this process if it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchlib import (
    BenchError,
    Children,
    cpu_seconds,
    free_port,
    history,
    interrupt_on,
    machine,
    say,
    tail,
    throwaway_database,
    wait_healthy,
)

WEBHOOK_PATH = "/api/alertmanager/webhook"
COMPONENTS = ("network", "validation_service", "database", "storage", "queue")
RULE_ALERTNAME = "PipelineComponentDown"
NO_RULE_ALERTNAME = "PipelineComponentDegraded"
# Bench-only token (the service refuses one shorter than 16 characters).
TOKEN = "webhook-storm-bench-token-0123456789"

# What Alertmanager sends as the endsAt of a firing alert.
ZERO_TIME = "0001-01-01T00:00:00Z"

AIM_P99_MS = 50.0
AIM_THROUGHPUT_RATIO = 0.5
# Several monitors on a shared PostgreSQL store.
AIM_GROUP_P99_MS = 100.0
AIM_GROUP_THROUGHPUT_RATIO = 0.35


# -- the storm ----------------------------------------------------------------------


@dataclass
class Expected:
    """What the server should have recorded for one distinct alert."""

    key: str
    component: str
    alertname: str
    sent: int = 0
    resolved_sends: int = 0

    @property
    def final_status(self) -> str:
        return "resolved" if self.resolved_sends else "firing"

    @property
    def has_rule(self) -> bool:
        return self.alertname == RULE_ALERTNAME


@dataclass
class Storm:
    bodies: list[str]
    groups: int
    alerts: dict[str, Expected] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(a.sent for a in self.alerts.values())


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fingerprint(labels: dict[str, str]) -> str:
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_storm(notifications: int, alerts: int, repeats: int) -> Storm:
    """Alertmanager's shape: groups notified ``repeats`` times, round after round.

    Group ``g``'s notification in round ``r`` is number ``r * groups + g``; an alert
    that ends resolved is firing in every round but its group's last two, so its
    first (firing) delivery comes many notifications before its resolution.
    """
    per_notification = max(1, alerts // notifications)
    groups = max(1, math.ceil(notifications / repeats))
    rounds = {g: 0 for g in range(groups)}
    for n in range(notifications):
        rounds[n % groups] += 1
    base = datetime(2024, 5, 6, 7, 0, 0, tzinfo=timezone.utc)
    members: dict[int, list[dict[str, Any]]] = {}
    storm = Storm(bodies=[], groups=groups)
    for g in range(groups):
        alertname = NO_RULE_ALERTNAME if g % 5 == 4 else RULE_ALERTNAME
        members[g] = []
        for j in range(per_notification):
            component = COMPONENTS[(g + j) % len(COMPONENTS)]
            labels = {
                "alertname": alertname,
                "component": component,
                "severity": "critical" if alertname == RULE_ALERTNAME else "warning",
                "recovery": "auto",
                "instance": f"monitor-{g:03d}-{j:03d}:8000",
                "job": "pipeline-monitor",
            }
            starts = base + timedelta(seconds=g * 7 + j)
            alert = {
                "labels": labels,
                "annotations": {
                    "summary": f"Pipeline component {component} is down",
                    "description": f"{component} has failed its probes on {labels['instance']}",
                    "runbook_url": f"https://runbooks.example/pipeline#{component}",
                },
                "startsAt": rfc3339(starts),
                "generatorURL": "http://prometheus:9090/graph?g0.expr=pipeline_component_up",
                "fingerprint": fingerprint(labels),
                # Whole group 2 (of every ten) and every tenth alert of the others.
                "ends_resolved": rounds[g] >= 3 and (g % 10 == 2 or j % 10 == 0),
            }
            members[g].append(alert)
            key = f"{alert['fingerprint']}@{alert['startsAt']}"
            storm.alerts[key] = Expected(key, component, alertname)
    for n in range(notifications):
        g, r = n % groups, n // groups
        sent = []
        for alert in members[g]:
            resolved = alert["ends_resolved"] and r >= rounds[g] - 2
            ends = rfc3339(base + timedelta(minutes=30 + r)) if resolved else ZERO_TIME
            sent.append(
                {
                    "status": "resolved" if resolved else "firing",
                    "labels": alert["labels"],
                    "annotations": alert["annotations"],
                    "startsAt": alert["startsAt"],
                    "endsAt": ends,
                    "generatorURL": alert["generatorURL"],
                    "fingerprint": alert["fingerprint"],
                }
            )
            expected = storm.alerts[f"{alert['fingerprint']}@{alert['startsAt']}"]
            expected.sent += 1
            expected.resolved_sends += 1 if resolved else 0
        group_labels = {"alertname": members[g][0]["labels"]["alertname"], "group": f"g{g:03d}"}
        firing = any(a["status"] == "firing" for a in sent)
        payload = {
            "version": "4",
            "groupKey": "{}:" + json.dumps(group_labels, sort_keys=True),
            "truncatedAlerts": 0,
            "status": "firing" if firing else "resolved",
            "receiver": "pipeline-recovery",
            "groupLabels": group_labels,
            "commonLabels": {"job": "pipeline-monitor", "recovery": "auto"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": sent,
        }
        storm.bodies.append(json.dumps(payload))
    return storm


# -- children: the roles this script plays in its child processes ----------------------


async def role_bare(args: argparse.Namespace) -> None:
    """The floor: an aiohttp handler that reads the body and answers 200."""
    from aiohttp import web

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post(WEBHOOK_PATH, webhook)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


async def role_client(args: argparse.Namespace) -> None:
    """Post the storm with ``--concurrency`` in flight; write timings to ``--out``."""
    import aiohttp

    bodies = [b.encode() for b in json.loads(Path(args.storm).read_text())]
    base = f"http://127.0.0.1:{args.port}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    results: list[tuple[float, int, str]] = [(0.0, 0, "")] * len(bodies)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm up: open every connection the storm will use, and the server's code paths
        # that are not the webhook's (which must see only the storm).
        async def warm() -> None:
            async with session.get(f"{base}/healthz") as response:
                await response.read()

        for _ in range(3):
            await asyncio.gather(*(warm() for _ in range(args.concurrency)))
        url = f"{base}{WEBHOOK_PATH}"
        cursor = 0

        async def worker() -> None:
            nonlocal cursor
            while cursor < len(bodies):
                index = cursor
                cursor += 1
                started = time.perf_counter()
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    text = await response.text()
                results[index] = (time.perf_counter() - started, response.status, text)

        # Warmed up: the parent samples the server's CPU time, then says go.
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
        print("done", flush=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "wall": wall,
                "latencies": [r[0] for r in results],
                "statuses": [r[1] for r in results],
                "answers": [r[2] for r in results],
            }
        )
    )


ROLES: dict[str, Callable[[argparse.Namespace], Any]] = {
    "bare": role_bare,
    "client": role_client,
}


# -- the parent: processes ----------------------------------------------------------------


def expect_line(process: subprocess.Popen[bytes], expected: str, timeout: float, log: Path) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().decode().strip() if ready else "(nothing)"
    if line != expected:
        raise BenchError(
            f"expected {expected!r} from a client within {timeout:g} s, got {line!r}: {tail(log)}"
        )


def service_argv() -> list[str]:
    script = Path(sys.executable).parent / "pipeline-monitor"
    if script.exists():
        return [str(script), "run"]
    return [sys.executable, "-m", "recovery_webhook.cli", "run"]


def service_config(tmp: Path, port: int, closed_port: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    probe = {
        "type": "tcp",
        "name": "reachability",
        "targets": [f"127.0.0.1:{closed_port}"],
        "timeout": 1,
    }
    config = {
        "check_interval": 10,
        "audit": {"file": str(tmp / "audit.log")},
        "server": {"host": "127.0.0.1", "port": port},
        "components": {name: {"probes": [probe]} for name in COMPONENTS},
        "recovery": {
            # A failed repair neither escalates nor retries within the run: each
            # distinct alert's repair stays the only one it starts.
            "max_attempts": 1_000_000,
            "retry_delay": "1h",
            "verify_timeout": "20ms",
            "verify_interval": "10ms",
            "rules": [
                {
                    "alertname": RULE_ALERTNAME,
                    "actions": [
                        {"type": "command", "argv": ["true"], "verify": False, "timeout": 10}
                    ],
                }
            ],
        },
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


# -- one storm ---------------------------------------------------------------------------


def percentile(seconds: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(seconds)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


@dataclass
class Run:
    name: str
    wall: float
    latencies: list[float]
    statuses: list[int]
    answers: list[str]
    cpu: float

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall


def storm_against(
    children: Children,
    name: str,
    label: str,
    targets: Sequence[tuple[int, int, Path]],
    args: argparse.Namespace,
) -> Run:
    """Send each target (port, server pid, its share of the storm) its share, all at
    once, one client each; the figures of all of them together."""
    clients = []
    for index, (port, _, storm_file) in enumerate(targets):
        out = storm_file.parent / f"{name}-{index}-results.json"
        client = children.role(
            f"client-{name}-{index}",
            "client",
            [
                "--port",
                str(port),
                "--storm",
                str(storm_file),
                "--out",
                str(out),
                "--concurrency",
                str(args.concurrency),
            ],
            pipes=True,
        )
        clients.append((client, children.log(f"client-{name}-{index}"), out))
    # The servers' CPU time over the storm alone, not the clients' start-up and warm-up.
    for client, log, _ in clients:
        expect_line(client, "ready", 60, log)
    cpu = sum(cpu_seconds(pid) for _, pid, _ in targets)
    for client, _, _ in clients:
        assert client.stdin is not None
        client.stdin.write(b"go\n")
        client.stdin.flush()
    for client, log, _ in clients:
        expect_line(client, "done", 300, log)
    cpu = sum(cpu_seconds(pid) for _, pid, _ in targets) - cpu
    wall, latencies, statuses, answers = 0.0, [], [], []
    for index, (client, log, out) in enumerate(clients):
        try:
            code = client.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"client-{name}-{index} did not exit after the storm") from None
        if code != 0:
            raise BenchError(f"client-{name}-{index} exited with code {code}: {tail(log)}")
        data = json.loads(out.read_text())
        wall = max(wall, data["wall"])
        latencies += data["latencies"]
        statuses += data["statuses"]
        answers += data["answers"]
    return Run(label, wall, latencies, statuses, answers, cpu)


# -- what the service recorded ---------------------------------------------------------------


def pending_repairs(store: str | Path) -> int:
    with history(store) as db:
        (alerts,) = db.execute(
            "SELECT count(*) FROM alerts WHERE repair IN ('queued', 'running')"
        ).fetchone()
        (attempts,) = db.execute(
            "SELECT count(*) FROM attempts WHERE status = 'running'"
        ).fetchone()
    return int(alerts) + int(attempts)


def wait_drained(
    store: str | Path, processes: Sequence[subprocess.Popen[bytes]], timeout: float
) -> float:
    """Seconds until no repair is queued or running."""
    started = time.monotonic()
    while True:
        for process in processes:
            if process.poll() is not None:
                raise BenchError(f"pipeline-monitor exited with code {process.returncode}")
        if pending_repairs(store) == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            with history(store) as db:
                alerts = db.execute(
                    "SELECT status, repair, count(*) FROM alerts GROUP BY status, repair"
                ).fetchall()
                attempts = db.execute(
                    "SELECT status, count(*) FROM attempts GROUP BY status"
                ).fetchall()
            raise BenchError(
                f"repairs still queued or running {timeout:g} s after the storm:"
                f" alerts by status and repair {alerts}; attempts by status {attempts}"
            )
        time.sleep(0.1)


def scrape_counter(port: int, name: str) -> dict[str, float]:
    """A counter's samples by their label text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for match in re.finditer(rf"^{name}_total(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        samples[match.group(1) or ""] = float(match.group(2))
    return samples


@dataclass
class Check:
    name: str
    ok: bool
    lines: list[str]


def check_recorded(
    storm: Storm, db: Any, real: Run, received_metric: float, monitors: int
) -> Check:
    lines: list[str] = []
    problems: list[str] = []
    rows = {
        key: (status, notifications, repair)
        for key, status, notifications, repair in db.execute(
            "SELECT key, status, notifications, repair FROM alerts"
        )
    }
    missing = [k for k in storm.alerts if k not in rows]
    extra = [k for k in rows if k not in storm.alerts]
    counted = sum(rows[k][1] for k in storm.alerts if k in rows)
    wrong_count = [k for k, a in storm.alerts.items() if k in rows and rows[k][1] != a.sent]
    wrong_status = [
        k for k, a in storm.alerts.items() if k in rows and rows[k][0] != a.final_status
    ]
    resolved = [a for a in storm.alerts.values() if a.final_status == "resolved"]
    lines.append(
        f"history: {len(rows)} alerts rows for {len(storm.alerts)} distinct alerts"
        f" ({len(missing)} missing, {len(extra)} unexpected);"
        f" deliveries counted {counted}/{storm.total}"
    )
    if missing or extra or wrong_count or wrong_status:
        problems.append(
            f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong_count)} with a wrong"
            f" delivery count, {len(wrong_status)} with a wrong status"
        )
    events = Counter(
        json.loads(data)["status"]
        for (data,) in db.execute("SELECT data FROM events WHERE kind = 'alert'")
    )
    want_events = {"firing": len(storm.alerts), "resolved": len(resolved)}
    lines.append(
        f"history: alert events {events['firing']} firing + {events['resolved']} resolved"
        f" (expected {want_events['firing']} + {want_events['resolved']})"
    )
    if dict(events) != {k: v for k, v in want_events.items() if v}:
        problems.append(f"alert events {dict(events)}, expected {want_events}")
    sums = Counter[str]()
    for text in real.answers:
        answer = json.loads(text)
        for key in ("received", "new", "duplicates", "resolved", "repairs_queued"):
            sums[key] += answer[key]
    want = {
        "received": storm.total,
        "new": len(storm.alerts),
        "duplicates": storm.total - len(storm.alerts) - len(resolved),
        "resolved": len(resolved),
        "repairs_queued": sum(a.has_rule for a in storm.alerts.values()),
    }
    statuses = Counter(real.statuses)
    lines.append(
        "webhook answers: "
        + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
        + "; "
        + ", ".join(f"{k} {sums[k]}" for k in want)
        + " (expected "
        + ", ".join(str(v) for v in want.values())
        + ")"
    )
    if set(statuses) != {200}:
        problems.append(f"non-200 answers: {dict(statuses)}")
    if monitors == 1 and {k: sums[k] for k in want} != want:
        problems.append("the webhook's counts differ from what was sent")
    if monitors > 1 and (
        sums["received"] != storm.total
        or sums["new"] + sums["duplicates"] + sums["resolved"] != storm.total
        or sums["new"] < len(storm.alerts)
    ):
        # Each monitor counts what it heard: an alert is new to each that hears it.
        problems.append("the webhook's counts, over the group, differ from what was sent")
    lines.append(
        f"metrics: pipeline_alerts_received_total {received_metric:g} (expected {storm.total})"
    )
    if received_metric != storm.total:
        problems.append("pipeline_alerts_received_total differs from what was sent")
    return Check("every alert recorded", not problems, lines + [f"  ! {p}" for p in problems])


def check_repairs(storm: Storm, db: Any) -> Check:
    problems: list[str] = []
    attempts = db.execute(
        "SELECT alert_key, trigger, status, actions, component FROM attempts"
    ).fetchall()
    repairs = {key: repair for key, repair in db.execute("SELECT key, repair FROM alerts")}
    per_alert = Counter(key for key, *_ in attempts)
    wanted = {k for k, a in storm.alerts.items() if a.has_rule}
    twice = [k for k, n in per_alert.items() if n > 1]
    unexpected = [k for k in per_alert if k not in wanted]
    triggers = Counter(trigger for _, trigger, *_ in attempts)
    outcomes = Counter(status for _, _, status, *_ in attempts)
    command_ran = sum(
        1
        for *_, actions, _ in attempts
        if (a := json.loads(actions)) and a[0]["type"] == "command" and a[0]["result"] == "success"
    )
    wrong_component = [
        key
        for key, *_, component in attempts
        if key in storm.alerts and storm.alerts[key].component != component
    ]
    not_repaired = [k for k in wanted if per_alert[k] == 0]
    skipped = Counter(repairs.get(k, "(no row)") for k in not_repaired)
    resolved_first = skipped.pop("resolved", 0)
    # A skipped alert is only fine when it was resolved before its turn came.
    not_resolved = [k for k in not_repaired if storm.alerts[k].final_status != "resolved"]
    lines = [
        f"repairs: {len(attempts)} attempts for {len(wanted)} distinct firing alerts that a rule"
        f" matches ({len(per_alert)} alerts repaired once, {len(twice)} twice or more,"
        f" {len(unexpected)} without a rule)",
        f"repairs: {resolved_first} skipped, resolved before their turn in the component's"
        f" queue; other skips {dict(skipped) or 0}",
        f"repairs: triggers {dict(triggers)}; outcomes {dict(outcomes)} (failure is by design:"
        f" `true` cannot open a closed port); the command ran in {command_ran}",
    ]
    if twice or unexpected or wrong_component:
        problems.append(
            f"{len(twice)} alerts repaired more than once, {len(unexpected)} unexpected,"
            f" {len(wrong_component)} repaired the wrong component"
        )
    if skipped or not_resolved:
        problems.append(f"alerts that ran no repair without being resolved: {dict(skipped)}")
    if set(triggers) - {"alert"} or command_ran != len(attempts):
        problems.append("an attempt not triggered by an alert, or whose command did not run")
    lines += [f"  ! {p}" for p in problems]
    return Check("exactly one repair per distinct alert", not problems, lines)


# -- the report ---------------------------------------------------------------------------------


def figure_line(run: Run) -> str:
    per = run.cpu / len(run.latencies) * 1000
    return (
        f"{run.name:<17} p50 {run.percentile(50):6.1f} ms  p99 {run.percentile(99):6.1f} ms"
        f"  max {max(run.latencies) * 1000:6.1f} ms  {run.rate:7.1f} notifications/s"
        f"  server CPU {run.cpu:.2f} s ({per:.2f} ms per notification,"
        f" busy {run.cpu / run.wall * 100:.0f}% of {run.wall:.2f} s)"
    )


def rounds_line(run: Run, first: int) -> str:
    """Latency of the first round, where every alert is new, and of the repeats."""
    head, rest = run.latencies[:first], run.latencies[first:]
    line = (
        f"{run.name:<17} first {len(head)} notifications (every alert new):"
        f" p50 {percentile(head, 50):.1f} ms, p99 {percentile(head, 99):.1f} ms"
    )
    if rest:
        line += (
            f"; the other {len(rest)} (repeats):"
            f" p50 {percentile(rest, 50):.1f} ms, p99 {percentile(rest, 99):.1f} ms"
        )
    return line


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="An Alertmanager notification storm against pipeline-monitor's webhook,"
        " next to a bare aiohttp handler; checks what history recorded and the repairs run."
    )
    parser.add_argument("--notifications", type=int, help="notifications to send (default 500)")
    parser.add_argument("--alerts", type=int, help="alerts they carry in all (default 10000)")
    parser.add_argument("--concurrency", type=int, help="requests in flight (default 50)")
    parser.add_argument(
        "--repeats", type=int, default=10, help="times each alert group is notified (default 10)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 notifications, 2000 alerts"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="storms to run, each against fresh servers; the aims judge the medians (default 1)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the history store: SQLite (one monitor) or a throwaway PostgreSQL database",
    )
    parser.add_argument(
        "--monitors",
        type=int,
        default=1,
        help="monitors sharing the store, the storm split across them (needs postgres)",
    )
    parser.add_argument(
        "--split",
        choices=("groups", "rounds"),
        default="groups",
        help="with several monitors: each alert group to one monitor, as a cluster of"
        " Alertmanagers sends it (default), or each round to the next, so that every"
        " monitor hears of nearly every alert (the store's worst case)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the repairs after the storm (default 300)",
    )
    # Used by the children this script starts.
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--storm", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = {"notifications": 100, "alerts": 2000, "concurrency": 50}
    full = {"notifications": 500, "alerts": 10_000, "concurrency": 50}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.notifications, args.alerts, args.concurrency, args.repeats, args.runs) < 1:
        parser.error(
            "--notifications, --alerts, --concurrency, --repeats and --runs must be at least 1"
        )
    if args.monitors > 1 and args.store != "postgres":
        parser.error("--monitors above 1 needs --store postgres (SQLite is a single node's)")
    if args.monitors < 1:
        parser.error("--monitors must be at least 1")
    if args.alerts // args.notifications > 10_000:
        parser.error("a notification may carry at most 10000 alerts")
    return args


@dataclass
class Outcome:
    """One storm against a fresh bare server and a fresh pipeline-monitor."""

    bare: Run
    real: Run
    drain: float
    checks: list[Check]
    audit: int

    @property
    def ratio(self) -> float:
        return self.real.rate / self.bare.rate


def run_once(storm: Storm, args: argparse.Namespace) -> Outcome:
    """Start both servers, send them the storm, check the service's history."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="webhook-storm-")))
        store: str | Path = tmp / "state-0" / "history.sqlite3"
        if args.store == "postgres":
            store = stack.enter_context(throwaway_database())
        children = Children(tmp, __file__)
        stack.callback(children.close)
        storm_file = tmp / "storm.json"
        storm_file.write_text(json.dumps(storm.bodies))
        bare_port, closed_port = free_port(), free_port()
        services = []
        for index in range(args.monitors):
            port = free_port()
            env = {"PIPELINE_STATE_DIR": str(tmp / f"state-{index}"), "PIPELINE_API_TOKEN": TOKEN}
            if args.store == "postgres":
                env |= {"PIPELINE_HISTORY_URL": str(store), "PIPELINE_INSTANCE": f"m{index}"}
            config = service_config(tmp / f"state-{index}", port, closed_port)
            service = children.spawn(
                f"pipeline-monitor-{index}",
                # Production settings: its own defaults (log level INFO, no access log).
                [*service_argv(), "--config", str(config)],
                env=env,
            )
            services.append((port, service))
        bare = children.role("bare", "bare", ["--port", str(bare_port)])
        wait_healthy(bare_port, bare, "bare", children.log("bare"))
        for index, (port, service) in enumerate(services):
            log = children.log(f"pipeline-monitor-{index}")
            wait_healthy(port, service, "pipeline-monitor", log)

        bare_run = storm_against(
            children, "bare", "bare aiohttp", [(bare_port, bare.pid, storm_file)], args
        )
        # As the Alertmanagers of a cluster send it: a group's notifications to one
        # monitor (--split groups), or each round of them to the next one in turn,
        # so that every monitor hears of nearly every alert (--split rounds).
        parts: list[list[str]] = [[] for _ in services]
        for n, body in enumerate(storm.bodies):
            group, round_ = n % storm.groups, n // storm.groups
            turn = group + (round_ if args.split == "rounds" else 0)
            parts[turn % len(services)].append(body)
        shares = []
        for index, (port, service) in enumerate(services):
            share = tmp / f"storm-{index}.json"
            share.write_text(json.dumps(parts[index]))
            shares.append((port, service.pid, share))
        label = "pipeline-monitor" if len(services) == 1 else f"{len(services)} monitors"
        real = storm_against(children, "monitor", label, shares, args)
        drain = wait_drained(store, [s for _, s in services], args.drain_timeout)
        received = sum(
            sum(scrape_counter(port, "pipeline_alerts_received").values()) for port, _ in services
        )
        # A clean stop writes the delivery counts the service keeps in memory.
        for index, (_, service) in enumerate(services):
            code = children.stop(service, timeout=15)
            if code != 0:
                raise BenchError(
                    f"pipeline-monitor exited with code {code} on SIGTERM:"
                    f" {tail(children.log(f'pipeline-monitor-{index}'))}"
                )
        with history(store) as db:
            checks = [
                check_recorded(storm, db, real, received, len(services)),
                check_repairs(storm, db),
            ]
        audit = sum(
            (tmp / f"state-{index}" / "audit.log").read_text().count("ALERT_TRIGGERED")
            for index in range(len(services))
        )
    return Outcome(bare_run, real, drain, checks, audit)


def spread(values: Sequence[float], digits: int) -> str:
    """``median (min-max)``."""
    return (
        f"{statistics.median(values):.{digits}f}"
        f" ({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        asyncio.run(ROLES[args.role](args))
        return 0

    interrupt_on(signal.SIGTERM)
    storm = build_storm(args.notifications, args.alerts, args.repeats)
    resolved = sum(a.final_status == "resolved" for a in storm.alerts.values())
    with_rule = sum(a.has_rule for a in storm.alerts.values())
    say(
        f"webhook_storm: {len(storm.bodies)} notifications carrying {storm.total} alerts"
        f" ({len(storm.alerts)} distinct, {with_rule} matching a recovery rule, {resolved} ending"
        f" resolved), {args.concurrency} in flight"
        + (f", {args.runs} runs" if args.runs > 1 else "")
        + f"; store {args.store}, {args.monitors} monitor(s)"
        + (f", split by {args.split}" if args.monitors > 1 else "")
    )
    import aiohttp  # here for its version; the roles import it as they need it

    say(f"{machine().line()}, aiohttp {aiohttp.__version__}")
    outcomes: list[Outcome] = []
    for number in range(1, args.runs + 1):
        try:
            outcome = run_once(storm, args)
        except KeyboardInterrupt:
            say("interrupted: stopping every child process")
            return 130
        except BenchError as exc:
            say(f"webhook_storm: {exc}")
            return 1
        outcomes.append(outcome)
        say()
        if args.runs > 1:
            say(f"run {number} of {args.runs}:")
        say(figure_line(outcome.real))
        say(figure_line(outcome.bare))
        say(rounds_line(outcome.real, storm.groups))
        say(f"throughput ratio: {outcome.ratio:.2f} of the bare handler's notifications/s")
        say(f"repairs drained {outcome.drain:.1f} s after the storm's last answer")
        for check in outcome.checks:
            for line in check.lines:
                say(line)
        say(f"audit log: {outcome.audit} ALERT_TRIGGERED lines (one per distinct alert)")

    p99s = [o.real.percentile(99) for o in outcomes]
    ratios = [o.ratio for o in outcomes]
    # Every run makes the same checks, in the same order.
    names = [check.name for check in outcomes[0].checks]
    runs = zip(*(outcome.checks for outcome in outcomes), strict=True)
    held = [all(check.ok for check in same) for same in runs]
    say()
    if args.runs > 1:
        say(f"over {args.runs} runs, median (min-max):")
        say(f"  pipeline-monitor p99 {spread(p99s, 1)} ms")
        say(f"  pipeline-monitor notifications/s {spread([o.real.rate for o in outcomes], 0)}")
        say(f"  bare aiohttp notifications/s {spread([o.bare.rate for o in outcomes], 0)}")
        say(f"  throughput ratio {spread(ratios, 2)}")
        say()
    p99, ratio = statistics.median(p99s), statistics.median(ratios)
    group = args.monitors > 1 or args.store == "postgres"
    aim_p99 = AIM_GROUP_P99_MS if group else AIM_P99_MS
    aim_ratio = AIM_GROUP_THROUGHPUT_RATIO if group else AIM_THROUGHPUT_RATIO
    of_runs = " (median of the runs)" if args.runs > 1 else ""
    say("aims:")
    say(f"  p99 under {aim_p99:g} ms: {p99:.1f} ms{of_runs}  {verdict(p99 < aim_p99)}")
    say(
        f"  at least {aim_ratio:g} of the bare handler's throughput: {ratio:.2f}"
        f"{of_runs}  {verdict(ratio >= aim_ratio)}"
    )
    for name, ok in zip(names, held, strict=True):
        say(f"  {name}: {verdict(ok)}" + (" (every run)" if args.runs > 1 and ok else ""))
    return 0 if all(held) else 1


if __name__ == "__main__":
    sys.exit(main())
