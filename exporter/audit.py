"""The audit log: the seed's line format and event names, or JSON lines.

Text lines read ``TIMESTAMP - LOGGER_NAME - LEVEL - EVENT: payload`` exactly as the
seed's log-interpretation guide shows them; ``format: json`` writes one JSON
object per line for log shippers. Every event is one line, whatever its texts
hold (see exporter.logsafe). Callers hand over error texts that were already
scrubbed; URL passwords and secret query parameters are masked here as well,
since alert labels and annotations come from outside.

The audit trail is its own record, apart from the service's log: each AuditLog
owns its writer thread, its stream and its rotating file. A call only queues the
event (an alert storm writes one ALERT_TRIGGERED line per new alert from the event
loop); the writer renders the lines in order and writes them in batches, so a
slow disk never stalls a probe or a webhook answer. A burst of events is held
back until it ends, for at most 0.2 s, so that rendering it does not compete
with the event loop while the loop is busiest.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from exporter.config import AuditConfig
from exporter.logsafe import json_safe, key_values
from exporter.private_files import FILE_MODE, open_private
from exporter.redact import mask_in

LOGGER_NAME = "pipeline_monitor.audit"

HEALTH_CHECK = "HEALTH_CHECK"
FAILURE_DETECTED = "FAILURE_DETECTED"
ALERT_TRIGGERED = "ALERT_TRIGGERED"
RECOVERY_ATTEMPT = "RECOVERY_ATTEMPT"
ESCALATION = "ESCALATION"
ALERT_RESOLVED = "ALERT_RESOLVED"

log = logging.getLogger(__name__)

_LEVELS = {
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_BATCH = 512
# A burst: this many events queued by the time the writer looks. While one goes
# on (an alert storm's new alerts, queued by the event loop as it records them),
# the writer looks again every _BURST_PAUSE until no more come, and for at most
# _BURST_HOLD, before it renders anything: rendering takes the GIL, which the
# event loop needs to answer the storm's notifications. The lines carry the
# times of their events, whenever they are written.
_BURST = 64
_BURST_PAUSE = 0.02
_BURST_HOLD = 0.2
_BURST_MAX = 16384  # events held at most: a backlog beyond it is written at once
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


def _dumps(value: Any) -> str:
    return json_safe(_encode(value))


# (time, level, event, fields, style); None stops the writer.
_Event = tuple[float, int, str, dict[str, Any], str]


class _Renderer:
    """Turns events into lines; the date text is rendered once per second."""

    def __init__(self, name: str, json_lines: bool) -> None:
        self.name = name
        self.json_lines = json_lines
        self._second = -1
        self._date = ""

    def line(self, event: _Event) -> str:
        created, level, name, fields, style = event
        # Masked field by field, before quoting: a pattern run over the finished
        # line could take a closing quote for part of a token.
        fields = mask_in(fields)
        levelname = _LEVELS.get(level) or logging.getLevelName(level)
        if self.json_lines:
            stamp = datetime.fromtimestamp(created, timezone.utc).isoformat()
            head = {"timestamp": stamp, "logger": self.name, "level": levelname, "event": name}
            return _dumps({**head, **fields})
        second = int(created)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        millis = int((created - second) * 1000)
        payload = _dumps(fields) if style == "json" else key_values(fields)
        return f"{self._date},{millis:03d} - {self.name} - {levelname} - {name}: {payload}"


class _RotatingFile:
    """Appends to a file and rolls it over as logging's RotatingFileHandler does:
    ``file`` -> ``file.1`` -> ... -> ``file.N`` once it would pass ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = self._open(FILE_MODE)
        self._size = self._file.tell()

    def _open(self, mode: int) -> IO[bytes]:
        # A new file is 0600 whatever the umask; an existing one keeps the mode
        # its owner gave it (read access for a log shipper, say).
        fd = open_private(self.path, os.O_WRONLY | os.O_APPEND, mode, tighten=False)
        return os.fdopen(fd, "ab")

    def write(self, lines: list[str]) -> None:
        data = "".join(lines).encode("utf-8")
        if not self._rolls or self._size + len(data) <= self.max_bytes:  # fits: one write
            self._file.write(data)
            self._size += len(data)
            self._file.flush()
            return
        for line in lines:
            data = line.encode("utf-8")
            if self._should_roll(len(data)):
                self._roll()
            self._file.write(data)
            self._size += len(data)
        self._file.flush()

    @property
    def _rolls(self) -> bool:
        return self.max_bytes > 0 and self.backup_count > 0

    def _should_roll(self, incoming: int) -> bool:
        return self._rolls and self._size > 0 and self._size + incoming > self.max_bytes

    def _roll(self) -> None:
        mode = stat.S_IMODE(os.fstat(self._file.fileno()).st_mode)  # the next file's too
        self._file.close()
        for index in range(self.backup_count - 1, 0, -1):
            older = Path(f"{self.path}.{index}")
            if older.exists():
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._file = self._open(mode)
        self._size = 0

    def close(self) -> None:
        self._file.close()


class HealthCheckSampler:
    """Which checks get a HEALTH_CHECK line with ``audit.health_check_every: N``.

    A component's first check, a check whose status differs from the previous
    one, and otherwise one check in N: a reader knows every change, and each
    component's state at least every N checks. At a thousand components the
    lines of every check are most of the audit volume (docs/BENCHMARKS.md).
    Called from the event loop only.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        # component -> (status of its last check, checks since its last line)
        self._last: dict[str, tuple[str, int]] = {}

    def due(self, component: str, status: str) -> bool:
        last = self._last.get(component)
        if last is None or last[0] != status or last[1] + 1 >= self.every:
            self._last[component] = (status, 0)
            return True
        self._last[component] = (status, last[1] + 1)
        return False


class AuditLog:
    """Writes audit events. One per monitor; ``stream=False`` writes no stream."""

    def __init__(self, config: AuditConfig, stream: Any = None, name: str = LOGGER_NAME) -> None:
        self.name = name
        self._renderer = _Renderer(name, config.format == "json")
        self._sampler = (
            HealthCheckSampler(config.health_check_every) if config.health_check_every > 1 else None
        )
        self._stream: IO[str] | None = None if stream is False else (stream or sys.stderr)
        self._file = (
            _RotatingFile(Path(config.file), config.max_bytes, config.backup_count)
            if config.file is not None
            else None
        )
        self._queue: queue.SimpleQueue[_Event | None] = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_forever, name="audit", daemon=True)
        self._writer.start()

    def close(self) -> None:
        """Write out what is queued and release the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        if self._file is not None:
            self._file.close()

    # -- the writer thread -------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            self._take(batch, _BATCH)
            if len(batch) >= _BURST and batch[-1] is not None:
                until = time.monotonic() + _BURST_HOLD
                while time.monotonic() < until:
                    time.sleep(_BURST_PAUSE)
                    seen = len(batch)
                    self._take(batch, _BURST_MAX)
                    if len(batch) in (seen, _BURST_MAX) or batch[-1] is None:
                        break
            for start in range(0, len(batch), _BATCH):
                events = [e for e in batch[start : start + _BATCH] if e is not None]
                if events:
                    self._write([self._renderer.line(e) + "\n" for e in events])
            if batch[-1] is None:
                return

    def _take(self, batch: list[_Event | None], limit: int) -> None:
        """Add what is queued to ``batch``, up to ``limit`` events or the stop."""
        while len(batch) < limit and batch[-1] is not None:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _write(self, lines: list[str]) -> None:
        if self._stream is not None:
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError) as exc:
                log.warning("audit: %d line(s) not written to the stream: %s", len(lines), exc)
        if self._file is not None:
            try:
                self._file.write(lines)
            except OSError as exc:
                log.warning(
                    "audit: %d line(s) not written to %s: %s", len(lines), self._file.path, exc
                )

    # -- events ------------------------------------------------------------------

    def event(self, level: int, event: str, fields: Mapping[str, Any], style: str = "json") -> None:
        """``style`` picks the seed's rendering of the payload: JSON or key=value.

        The fields are copied; they are rendered later, on the writer thread."""
        self._put(level, event, dict(fields), style)

    def _put(self, level: int, event: str, fields: dict[str, Any], style: str = "json") -> None:
        """Queue ``fields``, a dict nobody else holds (not copied)."""
        if not self._closed:
            self._queue.put((time.time(), level, event, fields, style))

    def health_check(
        self, component: str, status: str, latency_ms: float, error: str | None
    ) -> None:
        if self._sampler is not None and not self._sampler.due(component, status):
            return
        fields: dict[str, Any] = {
            "component": component,
            "status": status,
            "latency_ms": round(latency_ms, 1),
        }
        if error:
            fields["error"] = error
        self._put(logging.INFO, HEALTH_CHECK, fields)

    def failure_detected(self, component: str, error: str | None) -> None:
        self.event(
            logging.ERROR,
            FAILURE_DETECTED,
            {"component": component, "error": error or "unknown error"},
            style="kv",
        )

    def alert_triggered(self, component: str, severity: str, **fields: Any) -> None:
        fields = {"component": component, "severity": severity.upper(), **fields}
        self._put(logging.WARNING, ALERT_TRIGGERED, fields, style="kv")

    def alert_resolved(self, component: str, **fields: Any) -> None:
        self._put(logging.INFO, ALERT_RESOLVED, {"component": component, **fields}, style="kv")

    def recovery_attempt(self, fields: Mapping[str, Any]) -> None:
        level = logging.INFO if fields.get("success") else logging.ERROR
        self.event(level, RECOVERY_ATTEMPT, fields)

    def escalation(self, component: str, fields: Mapping[str, Any]) -> None:
        self.event(logging.CRITICAL, ESCALATION, {"component": component, **fields})
