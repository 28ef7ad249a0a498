"""What the benchmark scripts in bench/ share: the machine they ran on, CPU time,
ports, and the child processes they start and must never leave behind.

The scripts run as ``python bench/<name>.py``; Python puts bench/ first on the
module path, so ``import benchlib`` finds this file with no package around it.
Linux only, like the scripts: CPU time and the parent-death signal come from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Linux's clock id for another process's CPU time: ~pid << 3 | CPUCLOCK_SCHED.
_CPUCLOCK_SCHED = 2


class BenchError(Exception):
    """The run cannot go on: the message says what did not happen.

    Each script catches it in ``main``, prints it and exits 1, after its
    children are stopped.
    """


def say(line: str = "") -> None:
    """Print a line at once: a run's progress must reach a pipe (a test, ``tee``) live."""
    print(line, flush=True)


def interrupt_on(*signals: signal.Signals) -> None:
    """Let these signals raise KeyboardInterrupt, so that they stop a run as Ctrl-C does.

    The scripts clean up (stop every child, remove their files) where they catch
    KeyboardInterrupt; without this a SIGTERM would kill the parent and skip that.
    """

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for number in signals:
        signal.signal(number, interrupted)


# -- the machine ------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """What a run's figures were measured on; each script prints it its own way."""

    cpu: str
    cores: int | None
    ram_gib: float
    os: str
    kernel: str
    python: str

    def line(self) -> str:
        """One ``machine: ...`` line; a script adds the versions that matter to it."""
        return (
            f"machine: {self.cpu}, {self.cores} cores, RAM {self.ram_gib:.1f} GiB;"
            f" {self.os}, Linux {self.kernel}; Python {self.python}"
        )


def machine() -> Machine:
    """This machine, from /proc and /etc/os-release: figures mean little without it."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return Machine(
        cpu=cpu,
        cores=os.cpu_count(),
        ram_gib=mem_kb / 2**20,
        os=os_name,
        kernel=platform.release(),
        python=platform.python_version(),
    )


# -- processes and ports ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of the process, ended threads included.

    Read from the process's CPU-time clock (``clock_getcpuclockid``), which counts
    nanoseconds; utime + stime of /proc/<pid>/stat count the same in clock ticks
    (10 ms), too coarse for a short cycle or storm, and are the fallback.
    """
    try:
        return time.clock_gettime((~pid << 3) | _CPUCLOCK_SCHED)
    except OSError:
        pass
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def free_port() -> int:
    """A loopback port free right now, so that runs side by side do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(log: Path, lines: int = 5) -> str:
    """The last lines of a child's log in one line: why it died, in the error message."""
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no log)"


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies.

    A parent killed with SIGKILL cannot stop its children itself; this way they
    do not live on, holding ports and CPU. None where libc's prctl is not found.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


class Children:
    """Every process this run started; ``close`` stops them all, whatever happened.

    Each child writes to ``<logs>/<name>.log`` (its stdout too, unless piped), so
    that an error can quote it with :func:`tail`.
    """

    def __init__(self, logs: Path, script: str) -> None:
        """``script`` is the benchmark's own file: :meth:`role` starts it again."""
        self.logs = logs
        self.script = str(Path(script).resolve())
        self.processes: list[subprocess.Popen[bytes]] = []
        self._preexec = die_with_parent()

    def log(self, name: str) -> Path:
        """Where child ``name`` writes: read it with :func:`tail` when it fails."""
        return self.logs / f"{name}.log"

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        pipes: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` from the repository root, with ``env`` added to ours.

        With ``pipes`` its stdin and stdout are pipes to this process, else its
        stdin is empty and its stdout goes to its log.
        """
        with open(self.log(name), "wb") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log,
                cwd=REPO,
                env={**os.environ, **(env or {})},
                # Out of the terminal's process group: Ctrl-C reaches only this
                # process, which then stops the children in order.
                start_new_session=True,
                preexec_fn=self._preexec,
            )
        self.processes.append(process)
        return process

    def role(
        self, name: str, role: str, args: Sequence[str], pipes: bool = False
    ) -> subprocess.Popen[bytes]:
        """The benchmark script again, playing ``role`` (its hidden ``--role`` option)."""
        argv = [sys.executable, self.script, "--role", role, *args]
        return self.spawn(name, argv, pipes=pipes)

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 5) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns its exit code."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        return process.returncode

    def close(self) -> None:
        """Stop every child, the last started first (drivers before what they drive)."""
        for process in reversed(self.processes):
            self.stop(process)


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], name: str, log: Path, timeout: float = 20
) -> None:
    """Until something accepts a TCP connection on ``port``."""

    def listens() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    _wait(listens, process, name, log, timeout, f"does not listen on port {port}")


def wait_healthy(
    port: int, process: subprocess.Popen[bytes], name: str, log: Path, timeout: float = 30
) -> None:
    """Until ``GET /healthz`` on ``port`` answers 200."""

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)

    _wait(healthy, process, name, log, timeout, f"does not answer on port {port}")


def _wait(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    name: str,
    log: Path,
    timeout: float,
    not_ready: str,
) -> None:
    """Poll ``ready`` (an OSError counts as not yet); fail as soon as the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with code {process.returncode}: {tail(log)}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"{name} {not_ready} after {timeout:g} s: {tail(log)}")


# -- the history store ---------------------------------------------------------------------

#: The PostgreSQL server the benchmarks make their throwaway stores on.
POSTGRES_DSN = os.environ.get(
    "PIPELINE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def throwaway_database(dsn: str = POSTGRES_DSN) -> Iterator[str]:
    """A fresh PostgreSQL database on ``dsn``'s server (its URL), dropped afterwards."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"pm_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(f"cannot create a database on {dsn}: {exc}") from None
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def history(where: str | Path) -> Any:
    """A DB-API connection to a history store: a postgresql:// URL, or a SQLite
    file (read-only)."""
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        import psycopg

        return psycopg.connect(where, autocommit=True)
    import sqlite3

    return sqlite3.connect(f"file:{where}?mode=ro", uri=True, timeout=5)
