#!/usr/bin/env python3
"""Probe scale: what 1,000 HTTP targets cost our exporter, next to blackbox_exporter.

Usage (from the repository root, with the project's venv):

    .venv/bin/python bench/probe_scale.py [--targets 1000] [--cycles 4] [--interval 15]
    .venv/bin/python bench/probe_scale.py --quick      # a smoke run: 100 targets, 2 short cycles

Every party runs in its own process so that its CPU time and peak RSS are its own:

* a stand-in service (aiohttp, ``--server-workers`` processes on one SO_REUSEPORT
  port) answers ``GET /health/<n>`` with a small JSON 200;
* our exporter: a real :class:`exporter.monitor.Monitor` with ``--targets`` http
  probes in ``--components`` components, one ``ProbeScheduler.run_cycle()`` per
  interval plus one /metrics rendering (what a Prometheus scrape costs it);
* prometheus-blackbox-exporter with an ``http_2xx`` module, driven by a separate
  load process that sends one ``/probe`` request per target per interval, all
  at once, as Prometheus scraping 1,000 blackbox targets would;
* a bare aiohttp loop: one shared ClientSession doing the same GETs, the floor
  for any Python prober.

This process only orchestrates: it starts a cycle in a child every ``--interval``
seconds and samples each worker's CPU time (user + system, all threads; the
process CPU clock, i.e. /proc/<pid>/stat utime+stime in nanoseconds) at every
cycle start, so a cycle's CPU is everything the worker did until the next cycle
began. Peak RSS is VmHWM from /proc/<pid>/status. The Python children also
report the CPU time their garbage collector took. Linux only. Always exits 0
unless something crashes; Ctrl-C stops and reaps every child (and a killed
parent takes them along: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import math
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    REPO,
    BenchError,
    Children,
    cpu_seconds,
    free_port,
    interrupt_on,
    machine,
    say,
    tail,
    wait_for_port,
)

# Measured earlier on this machine, printed beside this run's figures.
REFERENCE_BLACKBOX_MS = 0.57
REFERENCE_BARE_MS = 0.28

AIM_CPU_RATIO = 1.0
AIM_RSS_MB = 150.0
# "Well inside the interval": a cycle may use at most this share of it.
AIM_WALL_SHARE = 0.25

BLACKBOX_BINARIES = ("prometheus-blackbox-exporter", "blackbox_exporter")


# -- children: the roles this script plays in its child processes ----------------


async def commands() -> AsyncIterator[str]:
    """Lines from the parent on stdin; ends when the parent closes the pipe (or dies)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().strip()


class GcClock:
    """CPU seconds the garbage collector took since the last ``take``.

    A collection runs in the thread that triggered it: thread time leaves out the
    other threads (the audit log's writer) that may run meanwhile.
    """

    def __init__(self) -> None:
        self.spent = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.spent += time.thread_time() - self._started

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent


def reply(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def target_urls(port: int, count: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/health/{n}" for n in range(count)]


async def role_server(args: argparse.Namespace) -> None:
    """The stand-in service. Counts requests and client connections it has seen."""
    from aiohttp import web

    body = b'{"status": "ok"}'
    requests = 0
    # One transport per TCP connection; a weak set forgets closed ones.
    transports: weakref.WeakSet[Any] = weakref.WeakSet()
    new_connections = 0

    async def health(request: web.Request) -> web.Response:
        nonlocal requests, new_connections
        requests += 1
        if request.transport is not None and request.transport not in transports:
            transports.add(request.transport)
            new_connections += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health/{n}", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # A backlog as deep as a whole cycle's connects: the first cycle opens them at once.
    site = web.TCPSite(runner, "127.0.0.1", args.port, reuse_port=True, backlog=4096)
    await site.start()
    reply(ready=True)
    async for command in commands():
        if command == "stats":
            reply(requests=requests, new_connections=new_connections)
            requests = new_connections = 0
        elif command == "quit":
            break
    await runner.cleanup()


async def role_exporter(args: argparse.Namespace) -> None:
    """Our exporter: a real Monitor, one scheduler cycle and one /metrics render per command."""
    sys.path.insert(0, str(REPO))
    from prometheus_client import generate_latest

    from exporter.config import MonitorConfig
    from exporter.model import Status
    from exporter.monitor import Monitor

    urls = target_urls(args.port, args.targets)
    per_component = math.ceil(len(urls) / args.components)
    components = {
        f"site_{c:04d}": {
            "probes": [
                {"type": "http", "name": f"health_{n:04d}", "url": url, "timeout": args.timeout}
                for n, url in enumerate(urls[c * per_component : (c + 1) * per_component])
            ]
        }
        for c in range(math.ceil(len(urls) / per_component))
    }
    config = MonitorConfig.model_validate(
        {
            "check_interval": args.interval,
            "state_dir": args.state_dir,
            "components": components,
        }
    )
    # The audit log goes to stderr, as under systemd; the parent sends that to a file.
    # Not monitor.start(): the parent paces the cycles (one run_cycle per command)
    # so that it can sample this process's CPU at each cycle's start.
    monitor = Monitor(config)
    if not args.no_gc_freeze:
        # As `pipeline-monitor run` does once it has started (recovery_webhook.app.serve):
        # the cyclic GC no longer scans what start-up built in every full collection.
        gc.collect()
        gc.freeze()
    profile = cProfile.Profile() if args.profile else None
    gc_clock = GcClock()
    reply(ready=True)
    async for command in commands():
        if command == "cycle":
            gc_clock.take()
            if profile is not None:
                profile.enable()
            started = time.perf_counter()
            await monitor.scheduler.run_cycle()
            wall = time.perf_counter() - started
            results = [
                result
                for component in monitor.state.components.values()
                for result in component.probes.values()
            ]
            rendered = time.perf_counter()
            exposition = generate_latest(monitor.registry)
            scrape = time.perf_counter() - rendered
            if profile is not None:
                profile.disable()
            reply(
                wall=wall,
                ok=sum(r.status is Status.HEALTHY for r in results),
                failed=sum(r.status is not Status.HEALTHY for r in results),
                errors=sorted({r.error for r in results if r.error})[:3],
                scrape_s=scrape,
                scrape_bytes=len(exposition),
                gc_s=gc_clock.take(),
            )
        elif command == "quit":
            break
    await monitor.stop()
    if profile is not None:
        profile.dump_stats(args.profile)


async def role_bare(args: argparse.Namespace) -> None:
    """The floor: one shared ClientSession, the same GETs, nothing else."""
    import aiohttp

    urls = target_urls(args.port, args.targets)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    # limit=0 like the exporter's connector: every target gets its own connection.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def get(url: str) -> str | None:
            try:
                async with session.get(url, timeout=timeout) as response:
                    return None if response.status == 200 else f"HTTP {response.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                return repr(exc)

        gc_clock = GcClock()
        reply(ready=True)
        async for command in commands():
            if command == "cycle":
                gc_clock.take()
                started = time.perf_counter()
                errors = await asyncio.gather(*(get(url) for url in urls))
                wall = time.perf_counter() - started
                failed = [e for e in errors if e]
                reply(
                    wall=wall,
                    ok=len(urls) - len(failed),
                    failed=len(failed),
                    errors=failed[:3],
                    gc_s=gc_clock.take(),
                )
            elif command == "quit":
                break


async def role_driver(args: argparse.Namespace) -> None:
    """Scrapes blackbox_exporter's /probe once per target per cycle, all at once."""
    import aiohttp

    base = f"http://127.0.0.1:{args.blackbox_port}/probe"
    queries = [
        {"module": "http_2xx", "target": url} for url in target_urls(args.port, args.targets)
    ]
    # Prometheus tells blackbox_exporter its scrape timeout; the module timeout is lower.
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{args.timeout * 2:g}"}
    timeout = aiohttp.ClientTimeout(total=args.timeout * 3)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def probe(query: dict[str, str]) -> str | None:
            try:
                async with session.get(
                    base, params=query, headers=headers, timeout=timeout
                ) as response:
                    text = await response.text()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                return repr(exc)
            if response.status != 200:
                return f"blackbox answered HTTP {response.status}"
            return None if "\nprobe_success 1" in text else "probe_success is not 1"

        reply(ready=True)
        async for command in commands():
            if command == "cycle":
                started = time.perf_counter()
                errors = await asyncio.gather(*(probe(q) for q in queries))
                wall = time.perf_counter() - started
                failed = [e for e in errors if e]
                reply(
                    wall=wall, ok=len(queries) - len(failed), failed=len(failed), errors=failed[:3]
                )
            elif command == "quit":
                break


ROLES: dict[str, Callable[[argparse.Namespace], Any]] = {
    "server": role_server,
    "exporter": role_exporter,
    "bare": role_bare,
    "driver": role_driver,
}


# -- the parent: processes, /proc sampling ------------------------------------------


def rss_mb(pid: int, key: str = "VmHWM") -> float:
    """VmHWM (peak resident set) or VmRSS of the process, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no {key} for process {pid}")


def start_child(children: Children, name: str, role: str, args: Sequence[str]) -> Child:
    """This script again in ``role``, talking over its stdin and stdout."""
    return Child(name, children.role(name, role, args, pipes=True), children.log(name))


class Child:
    """A child playing a role: one JSON line back for each command line sent."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command.encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None

    def receive(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError(f"{self.name}: no answer within {timeout:g} s: {tail(self.log)}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._died()
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str, timeout: float) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def quit(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=timeout)
            except (BenchError, subprocess.TimeoutExpired):
                pass

    def _died(self) -> BenchError:
        code = self.process.wait()
        return BenchError(f"{self.name} exited with code {code}: {tail(self.log)}")


# -- one subject's cycles -------------------------------------------------------------


@dataclass
class Cycle:
    wall: float
    cpu: float
    ok: int
    failed: int
    server_cpu: float
    new_connections: int
    errors: list[str] = field(default_factory=list)
    scrape_s: float | None = None
    gc_s: float | None = None


@dataclass
class Subject:
    name: str
    cycles: list[Cycle]
    peak_rss_mb: float
    note: str = ""

    def steady(self) -> list[Cycle]:
        """Cycles after the first, which also opens every connection and warms caches."""
        return self.cycles[1:] or self.cycles

    def cpu_ms_per_probe(self, targets: int, cycles: list[Cycle] | None = None) -> float:
        chosen = self.steady() if cycles is None else cycles
        return statistics.mean(c.cpu for c in chosen) * 1000 / targets

    def wall(self) -> float:
        return max(c.wall for c in self.cycles)


class Server:
    def __init__(self, workers: list[Child]) -> None:
        self.workers = workers

    def cpu(self) -> float:
        return sum(cpu_seconds(w.pid) for w in self.workers)

    def new_connections(self) -> int:
        return sum(w.ask("stats", 10)["new_connections"] for w in self.workers)


def run_cycles(
    name: str,
    driver: Child,
    worker_pid: int,
    server: Server,
    args: argparse.Namespace,
    progress: Callable[[str], None],
) -> list[Cycle]:
    """One cycle per interval; CPU is sampled at each cycle start and after the last.

    The stand-in server's CPU is taken over the cycle alone (until the answer):
    against the cycle's wall time it tells whether the server set the pace.
    """
    driver.receive(60)  # ready
    server.new_connections()  # reset the server's counters
    started = time.monotonic()
    cpu = [cpu_seconds(worker_pid)]
    answers = []
    connections = []
    server_cpu = []
    for k in range(args.cycles):
        at = started + k * args.interval
        time.sleep(max(0.0, at - time.monotonic()))
        if k:
            cpu.append(cpu_seconds(worker_pid))
        server_before = server.cpu()
        answer = driver.ask("cycle", args.interval * 2 + 60)
        server_cpu.append(server.cpu() - server_before)
        answers.append(answer)
        connections.append(server.new_connections())
        progress(
            f"  {name} cycle {k + 1}/{args.cycles}: {answer['wall']:.3f} s,"
            f" {answer['ok']} ok, {answer['failed']} failed"
        )
    time.sleep(max(0.0, started + args.cycles * args.interval - time.monotonic()))
    cpu.append(cpu_seconds(worker_pid))
    return [
        Cycle(
            wall=a["wall"],
            cpu=cpu[k + 1] - cpu[k],
            ok=a["ok"],
            failed=a["failed"],
            errors=a.get("errors", []),
            scrape_s=a.get("scrape_s"),
            gc_s=a.get("gc_s"),
            server_cpu=server_cpu[k],
            new_connections=connections[k],
        )
        for k, a in enumerate(answers)
    ]


def common_args(args: argparse.Namespace) -> list[str]:
    return [
        "--port",
        str(args.port),
        "--targets",
        str(args.targets),
        "--interval",
        str(args.interval),
        "--timeout",
        str(args.timeout),
    ]


def bench_exporter(
    children: Children, server: Server, args: argparse.Namespace, say: Callable[[str], None]
) -> Subject:
    child = start_child(
        children,
        "exporter",
        "exporter",
        [
            *common_args(args),
            *("--components", str(args.components), "--state-dir", args.state_dir),
            *(("--profile", str(Path(args.profile).resolve())) if args.profile else ()),
            *(("--no-gc-freeze",) if args.no_gc_freeze else ()),
        ],
    )
    cycles = run_cycles("pipeline exporter", child, child.pid, server, args, say)
    peak = rss_mb(child.pid)
    child.quit()
    freeze = "no gc.freeze()" if args.no_gc_freeze else "gc.freeze() after start-up"
    return Subject("pipeline exporter", cycles, peak, note=f"one Monitor, {freeze}")


def bench_blackbox(
    children: Children,
    server: Server,
    args: argparse.Namespace,
    binary: str,
    say: Callable[[str], None],
) -> Subject:
    port = free_port()
    config = Path(args.state_dir) / "blackbox.yml"
    config.write_text(
        "modules:\n"
        "  http_2xx:\n"
        "    prober: http\n"
        f"    timeout: {args.timeout:g}s\n"
        "    http:\n"
        "      method: GET\n"
        "      preferred_ip_protocol: ip4\n"
    )
    process = children.spawn(
        "blackbox_exporter",
        [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        pipes=False,
    )
    wait_for_port(port, process, "blackbox_exporter", children.log("blackbox_exporter"))
    driver = start_child(
        children, "blackbox-driver", "driver", [*common_args(args), "--blackbox-port", str(port)]
    )
    cycles = run_cycles("blackbox_exporter", driver, process.pid, server, args, say)
    peak = rss_mb(process.pid)
    driver.quit()
    children.stop(process)
    return Subject("blackbox_exporter", cycles, peak, note="its own process, not the driver")


def bench_bare(
    children: Children, server: Server, args: argparse.Namespace, say: Callable[[str], None]
) -> Subject:
    child = start_child(children, "bare", "bare", common_args(args))
    cycles = run_cycles("bare aiohttp loop", child, child.pid, server, args, say)
    peak = rss_mb(child.pid)
    child.quit()
    return Subject("bare aiohttp loop", cycles, peak, note="one shared ClientSession")


# -- the report -------------------------------------------------------------------------


def machine_lines() -> list[str]:
    import aiohttp

    this = machine()
    return [
        f"CPU: {this.cpu}, {this.cores} cores; RAM {this.ram_gib:.1f} GiB",
        f"OS: {this.os}, Linux {this.kernel}; Python {this.python}, aiohttp {aiohttp.__version__}",
    ]


def blackbox_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown version"
    first = (done.stdout or done.stderr).splitlines()[:1]
    return first[0] if first else "unknown version"


def divide(a: float, b: float) -> float:
    return a / b if b else math.nan


def report(
    subjects: list[Subject], args: argparse.Namespace, layout: str, extra: list[str]
) -> None:
    out = print
    targets = args.targets
    n = args.cycles
    steady_label = {1: "cycle 1", 2: "cycle 2"}.get(n, f"cycles 2-{n}")
    head = "".join(f"{f'cycle {k + 1}':>10}" for k in range(n))
    out()
    out("=" * 78)
    out(f"Probe scale: {targets} HTTP targets ({layout}), {n} cycles every {args.interval:g} s")
    for line in machine_lines() + extra:
        out(f"  {line}")
    out()
    out(f"{'Per cycle':<44}{head}")
    for subject in subjects:
        cycles = subject.cycles
        rows: list[tuple[str, list[str]]] = [
            ("wall s (all results in)", [f"{c.wall:.3f}" for c in cycles]),
            ("CPU s", [f"{c.cpu:.3f}" for c in cycles]),
        ]
        if cycles[0].gc_s is not None:
            rows.append(("  of which GC ms", [f"{(c.gc_s or 0) * 1000:.0f}" for c in cycles]))
        if cycles[0].scrape_s is not None:
            rows.append(
                ("  /metrics render ms", [f"{(c.scrape_s or 0) * 1000:.1f}" for c in cycles])
            )
        rows += [
            ("CPU ms/probe", [f"{c.cpu * 1000 / targets:.3f}" for c in cycles]),
            ("probes ok", [f"{c.ok}" for c in cycles]),
            ("new connections", [f"{c.new_connections}" for c in cycles]),
            ("server CPU s in cycle", [f"{c.server_cpu:.3f}" for c in cycles]),
        ]
        for index, (label, values) in enumerate(rows):
            name = subject.name if index == 0 else ""
            out(f"{name:<19}{label:<25}" + "".join(f"{v:>10}" for v in values))
    out()
    out(f"Summary ({steady_label}; cycle 1 also opens the connections)")
    out(
        f"{'':<19}{'wall s':>10}{'CPU s':>8}{'CPU ms/probe':>14}{'cold ms/probe':>15}"
        f"{'new conns':>11}{'peak RSS MB':>13}"
    )
    for s in subjects:
        steady = s.steady()
        out(
            f"{s.name:<19}{statistics.mean(c.wall for c in steady):>10.3f}"
            f"{statistics.mean(c.cpu for c in steady):>8.3f}"
            f"{s.cpu_ms_per_probe(targets):>14.3f}"
            f"{s.cpu_ms_per_probe(targets, s.cycles[:1]):>15.3f}"
            f"{statistics.mean(c.new_connections for c in steady):>11.0f}"
            f"{s.peak_rss_mb:>13.1f}"
        )
    for s in subjects:
        if s.note:
            out(f"  {s.name}: {s.note}")
    busiest = max(
        (c.server_cpu / c.wall if c.wall else 0.0, s.name) for s in subjects for c in s.cycles
    )
    out(
        f"  stand-in server ({args.server_workers} worker(s)): at most {busiest[0]:.0%} of one"
        f" core busy during a cycle's wall time ({busiest[1]})"
        + ("  <- may be the bottleneck" if busiest[0] > 0.8 * args.server_workers else "")
    )
    failed = [(s.name, c) for s in subjects for c in s.cycles if c.failed]
    for name, cycle in failed[:3]:
        out(f"  WARNING {name}: {cycle.failed} probes failed, e.g. {cycle.errors[:2]}")

    by_name = {s.name: s for s in subjects}
    ours = by_name["pipeline exporter"]
    out()
    out("Aims")
    wall = ours.wall()
    share = wall / args.interval
    out(
        f"  aim: cycle wall time well inside the interval: slowest {wall:.3f} s"
        f" = {share:.1%} of {args.interval:g} s (aim < {AIM_WALL_SHARE:.0%})"
        f"  {'MET' if share < AIM_WALL_SHARE else 'MISSED'}"
    )
    blackbox = by_name.get("blackbox_exporter")
    if blackbox is not None:
        ratio = divide(ours.cpu_ms_per_probe(targets), blackbox.cpu_ms_per_probe(targets))
        cold = divide(
            ours.cpu_ms_per_probe(targets, ours.cycles[:1]),
            blackbox.cpu_ms_per_probe(targets, blackbox.cycles[:1]),
        )
        out(
            f"  aim: CPU per probe ours/blackbox_exporter ratio: {ratio:.2f}"
            f" ({ours.cpu_ms_per_probe(targets):.3f} / {blackbox.cpu_ms_per_probe(targets):.3f} ms;"
            f" cycle 1: {cold:.2f}) (aim < {AIM_CPU_RATIO:.1f})"
            f"  {'MET' if ratio < AIM_CPU_RATIO else 'MISSED'}"
        )
    else:
        out(
            "  aim: CPU per probe ours/blackbox_exporter ratio: not measured (no blackbox_exporter)"
        )
    bare = by_name.get("bare aiohttp loop")
    if bare is not None:
        out(
            f"  ref: CPU per probe ours/bare aiohttp loop ratio: "
            f"{divide(ours.cpu_ms_per_probe(targets), bare.cpu_ms_per_probe(targets)):.2f}"
        )
    out(
        f"  aim: peak RSS of our exporter: {ours.peak_rss_mb:.1f} MB (aim < {AIM_RSS_MB:g} MB)"
        f"  {'MET' if ours.peak_rss_mb < AIM_RSS_MB else 'MISSED'}"
    )
    out(
        f"  reference figures measured earlier on this machine: blackbox_exporter"
        f" ~{REFERENCE_BLACKBOX_MS} ms, bare aiohttp loop ~{REFERENCE_BARE_MS} ms CPU per probe"
    )


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU, wall time and memory of probing N HTTP targets: our exporter,"
        " prometheus-blackbox-exporter and a bare aiohttp loop."
    )
    parser.add_argument("--targets", type=int, help="HTTP targets (default 1000)")
    parser.add_argument("--cycles", type=int, help="probe cycles per subject (default 4)")
    parser.add_argument("--interval", type=float, help="seconds between cycles (default 15)")
    parser.add_argument(
        "--components",
        type=int,
        help="components the targets are grouped in (default 10: 100 probes each)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=max(1, min(4, (os.cpu_count() or 2) // 2)),
        help="stand-in service processes on one SO_REUSEPORT port (default: cores / 2)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 targets, 2 cycles, 1 s apart"
    )
    parser.add_argument("--no-blackbox", action="store_true", help="skip blackbox_exporter")
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="don't gc.freeze() our exporter after start-up (as the service does), e.g. to"
        " see a Monitor embedded through the Python API",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile our exporter's cycles into FILE (pstats format; slows it down)",
    )
    parser.add_argument(
        "--blackbox-binary",
        default=next(filter(None, map(shutil.which, BLACKBOX_BINARIES)), None),
        help="blackbox_exporter binary (default: found on PATH)",
    )
    # Used by the children this script starts.
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--blackbox-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = {"targets": 100, "cycles": 2, "interval": 1.0, "components": 10}
    full = {"targets": 1000, "cycles": 4, "interval": 15.0, "components": 10}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.targets < 1 or args.cycles < 1 or args.interval <= 0:
        parser.error("--targets and --cycles must be at least 1, --interval above 0")
    args.components = max(1, min(args.components, args.targets))
    if args.timeout is None:
        # Each probe's timeout must be shorter than the check interval.
        args.timeout = min(5.0, args.interval / 2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        asyncio.run(ROLES[args.role](args))
        return 0

    # Both stop the run the same way, even when started with SIGINT ignored.
    interrupt_on(signal.SIGTERM, signal.SIGINT)
    per_component = math.ceil(args.targets / args.components)
    layout = f"{math.ceil(args.targets / per_component)} components x {per_component} http probes"
    binary = None if args.no_blackbox else args.blackbox_binary
    extra = [f"blackbox_exporter: {blackbox_version(binary)}" if binary else "no blackbox_exporter"]
    # The cores are shared with whatever else runs: wall times are only as clean as this.
    load_before = os.getloadavg()[0]
    say(
        f"probe_scale: {args.targets} targets ({layout}), {args.cycles} cycles, {args.interval:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="probe-scale-") as tmp:
        args.state_dir = tmp
        args.port = free_port()
        children = Children(Path(tmp), __file__)
        try:
            workers = [
                start_child(children, f"server-{w}", "server", ["--port", str(args.port)])
                for w in range(args.server_workers)
            ]
            for worker in workers:
                worker.receive(60)
            server = Server(workers)
            subjects = [bench_exporter(children, server, args, say)]
            if binary:
                subjects.append(bench_blackbox(children, server, args, binary, say))
            else:
                say("  blackbox_exporter: not found or skipped; its ratio is not measured")
            subjects.append(bench_bare(children, server, args, say))
            audit_lines = sum(
                1
                for line in (Path(tmp) / "exporter.log").read_text().splitlines()
                if "HEALTH_CHECK" in line
            )
            extra.append(
                f"our audit log: {audit_lines} HEALTH_CHECK lines"
                f" ({audit_lines / args.cycles:g} per cycle, one per component)"
            )
            for worker in workers:
                worker.quit()
            extra.append(
                f"load average (1 min) at start {load_before:.2f}, at end {os.getloadavg()[0]:.2f}"
            )
            report(subjects, args, layout, extra)
        except KeyboardInterrupt:
            say("interrupted: stopping every child process")
            return 130
        except BenchError as exc:
            say(f"probe_scale: {exc}")
            return 1
        finally:
            children.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
