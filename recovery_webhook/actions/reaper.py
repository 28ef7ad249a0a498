"""Repair commands never outlive their monitor.

Each repair command runs in a process group of its own. A small watcher
process, started once per monitor (``python -I -S reaper.py GRACE``), is told
on its standard input which groups are running (``+PGID`` when one starts,
``-PGID`` when it ends). When its standard input reaches end-of-file, the
monitor is gone, whatever ended it (a SIGKILL included): it sends SIGTERM to the
groups still running, SIGKILL to what is left after GRACE seconds, and exits.

So a monitor killed mid-repair leaves no repair command behind for the monitor
that takes the repair over (its lease lasts longer than GRACE). The watcher
imports nothing but the standard library, so it starts in milliseconds.

:class:`Reaper` is the monitor's side.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

log = logging.getLogger(__name__)

GRACE = 2.0


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # not ours any more (the group id was reused)
        return False
    return True


def _end(groups: set[int], grace: float) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(g) for g in groups):
        time.sleep(0.05)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def watch(grace: float) -> None:
    """The watcher: read the groups from stdin until end-of-file, then end them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the monitor's to handle
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("+"):
            groups.add(int(line[1:]))
        elif line.startswith("-"):
            groups.discard(int(line[1:]))
    if groups:
        _end(groups, grace)


class Reaper:
    """The monitor's side: start the watcher, tell it of every command's group."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self._process: asyncio.subprocess.Process | None = None
        self._groups: set[int] = set()

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            __file__,
            str(self.grace),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            # Its own session: a Ctrl-C or a SIGTERM to the monitor's group must
            # leave it to see the monitor go, and clean up after it.
            start_new_session=True,
        )
        for pgid in self._groups:  # started again after it died: tell it all
            self._tell(f"+{pgid}")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), self.grace + 5)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()

    async def started(self, pgid: int) -> None:
        self._groups.add(pgid)
        if self._process is None or self._process.returncode is not None:
            if self._process is not None:
                log.error(
                    "the watcher of repair commands ended (status %s); starting it again",
                    self._process.returncode,
                )
            await self.start()
        else:
            self._tell(f"+{pgid}")

    def ended(self, pgid: int) -> None:
        self._groups.discard(pgid)
        self._tell(f"-{pgid}")

    def _tell(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        try:
            process.stdin.write(f"{line}\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass


if __name__ == "__main__":
    watch(float(sys.argv[1]) if len(sys.argv) > 1 else GRACE)
