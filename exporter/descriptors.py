"""File descriptors: how many the process may open, has open, and keeps for probes.

Probes open sockets and files on every run. If clients of the HTTP server took
every descriptor, the probes would fail with "Too many open files" and editors
would be told that publishing is down: a false alarm made by the monitor. So
whoever serves clients keeps :func:`probe_reserve` descriptors free for them.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable

# The exporter's own needs besides the probes: the shared HTTP session's DNS
# lookups, the transition webhook, the audit file, a probe's client reconnecting.
_EXPORTER_BASE = 16


def descriptor_limit() -> int | None:
    """The soft limit on open files (RLIMIT_NOFILE), or None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def open_descriptors() -> int | None:
    """How many descriptors this process has open now (None where that is unknown)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory)) - 1  # less the one listdir() itself held
        except OSError:
            continue
    return None


def probe_reserve(probes: Iterable[object]) -> int:
    """Descriptors to keep free for ``probes``: each kind says what one run may
    hold at once (``descriptors()``), twice over, since a run abandoned at its
    timeout may still hold its own while the next one runs."""
    per_run = 0
    for probe in probes:
        count = getattr(probe, "descriptors", None)
        per_run += int(count()) if callable(count) else 2
    return 2 * per_run + _EXPORTER_BASE
