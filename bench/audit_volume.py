#!/usr/bin/env python3
"""Audit volume: what the HEALTH_CHECK lines of a large pipeline write in a day,
with ``audit.health_check_every`` at 1 (every check, the default) and larger N.

Usage (from the repository root, with the project's venv):

    .venv/bin/python bench/audit_volume.py [--components 1000] [--cycles 120]
        [--interval 30] [--flapping 10] [--flap-every 6] [--every 1 10 60]
    .venv/bin/python bench/audit_volume.py --quick   # 50 components, 12 cycles

Each run is the real probe scheduler (exporter.scheduler.ProbeScheduler) writing
to the real AuditLog (a file, and a stream that counts what it is given), in the
text and the JSON format. The probes are scripted stand-ins, so that the run
costs no network and every run sees the same results: ``--flapping`` components
turn unhealthy and back every ``--flap-every`` checks (with a connection error
as a real probe reports it), the others stay healthy; latencies vary as real
ones do (0.3-40 ms). Cycles run back to back; the figures are scaled to a day
of checks every ``--interval`` seconds. The stream receives the same lines as
the file (under systemd, the journal), so a monitor writes each figure twice.
Always exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchlib import machine, say

from exporter.audit import AuditLog
from exporter.config import AuditConfig
from exporter.model import ProbeResult, Status
from exporter.scheduler import ProbeScheduler
from exporter.state import ComponentState, PipelineState

DAY = 86400.0
ERROR = "http://validator-{n}.internal:8080/health: cannot connect: Connection refused"


class ScriptedProbe:
    """A probe whose results follow a fixed script: no I/O, the same in every run."""

    timeout = 5.0

    def __init__(self, index: int, flap_every: int | None) -> None:
        self.name = "http"
        self.index = index
        self.flap_every = flap_every
        self.runs = 0

    async def run(self) -> ProbeResult:
        self.runs += 1
        latency = (0.3 + (self.index * 7 + self.runs * 13) % 400 / 10) / 1000
        if self.flap_every and (self.runs // self.flap_every) % 2 == 1:
            return ProbeResult.unhealthy(ERROR.format(n=self.index), latency)
        return ProbeResult(Status.HEALTHY, latency)

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def secrets(self) -> Iterable[str]:
        return ()


class CountingStream:
    """Stands in for stderr: counts what the audit log writes to it."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class Run:
    format: str
    every: int
    lines: int
    file_bytes: int
    stream_chars: int
    cpu_seconds: float
    cycles: int


async def one_run(args: argparse.Namespace, fmt: str, every: int, directory: Path) -> Run:
    path = directory / f"audit-{fmt}-{every}.log"
    stream = CountingStream()
    audit = AuditLog(
        AuditConfig(file=path, format=fmt, max_bytes=0, health_check_every=every), stream=stream
    )
    names = [f"article_site_{i:04d}" for i in range(args.components)]
    state = PipelineState(
        ComponentState(name=name, display_name=name, blocks_publishing=True, aggregate="worst")
        for name in names
    )
    probes = {
        name: [ScriptedProbe(i, args.flap_every if i < args.flapping else None)]
        for i, name in enumerate(names)
    }
    scheduler = ProbeScheduler(state, probes, args.interval, audit)
    started = time.process_time()
    try:
        for _ in range(args.cycles):
            await scheduler.run_cycle()
    finally:
        audit.close()  # writes out what is queued: the CPU time includes the writer's
    cpu = time.process_time() - started
    text = path.read_text(encoding="utf-8")
    lines = sum(1 for line in text.splitlines() if "HEALTH_CHECK" in line)
    return Run(fmt, every, lines, path.stat().st_size, stream.chars, cpu, args.cycles)


def per_day(value: float, args: argparse.Namespace) -> float:
    return value * DAY / args.interval / args.cycles


def report(runs: list[Run], args: argparse.Namespace) -> None:
    info = machine()
    say(info.line())
    say(
        f"audit volume: {args.components} components, a check every {args.interval:g} s,"
        f" {args.cycles} cycles measured; {args.flapping} components flap"
        f" (unhealthy and back every {args.flap_every} checks)"
    )
    say(
        f"{'format':<7}{'every':>6}{'lines/day':>14}{'MB/day file':>13}"
        f"{'MB/day stream':>15}{'vs every check':>16}{'CPU ms/cycle':>14}"
    )
    baseline = {r.format: r for r in runs if r.every == 1}
    for run in runs:
        base = baseline.get(run.format)
        ratio = f"{run.file_bytes / base.file_bytes:.3f}" if base else "-"
        say(
            f"{run.format:<7}{run.every:>6}{per_day(run.lines, args):>14,.0f}"
            f"{per_day(run.file_bytes, args) / 1e6:>13.1f}"
            f"{per_day(run.stream_chars, args) / 1e6:>15.1f}{ratio:>16}"
            f"{1000 * run.cpu_seconds / run.cycles:>14.1f}"
        )
    for run in runs:
        if run.every == 1:
            say(
                f"ref: every check, {run.format}: {run.file_bytes / run.lines:.0f} bytes a line,"
                f" {2 * per_day(run.file_bytes, args) / 1e9:.2f} GB a day to file and stream"
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=120)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--flapping", type=int, default=10)
    parser.add_argument("--flap-every", type=int, default=6)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 10, 60])
    parser.add_argument("--formats", nargs="+", default=["text", "json"])
    parser.add_argument("--quick", action="store_true", help="50 components, 12 cycles")
    args = parser.parse_args(argv)
    if args.quick:
        args.components, args.cycles, args.flapping, args.flap_every = 50, 12, 5, 3
        args.every = [1, 4]
    if 1 not in args.every:
        args.every = [1, *args.every]
    with tempfile.TemporaryDirectory(prefix="audit-volume-") as tmp:
        runs = [
            asyncio.run(one_run(args, fmt, every, Path(tmp)))
            for fmt in args.formats
            for every in args.every
        ]
    report(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
