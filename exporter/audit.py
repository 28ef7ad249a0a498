"""The audit log: the seed's line format and event names, or JSON lines.

Text lines read ``TIMESTAMP - LOGGER_NAME - LEVEL - EVENT: payload`` exactly as the
seed's log-interpretation guide shows them; ``format: json`` writes one JSON
object per line for log shippers. Nothing secret is passed in: callers hand over
error texts that were already scrubbed.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exporter.config import AuditConfig

LOGGER_NAME = "pipeline_monitor.audit"

HEALTH_CHECK = "HEALTH_CHECK"
FAILURE_DETECTED = "FAILURE_DETECTED"
ALERT_TRIGGERED = "ALERT_TRIGGERED"
RECOVERY_ATTEMPT = "RECOVERY_ATTEMPT"
ESCALATION = "ESCALATION"
ALERT_RESOLVED = "ALERT_RESOLVED"

TEXT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
            "level": record.levelname,
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
            line.update(getattr(record, "fields", {}))
        else:
            line["message"] = record.getMessage()
        return json.dumps(line, default=str, ensure_ascii=False)


class AuditLog:
    """Writes audit events. One instance per monitor; handlers are its own."""

    def __init__(self, config: AuditConfig, stream: Any = None, name: str = LOGGER_NAME) -> None:
        self.logger = logging.getLogger(name)
        self.logger.setLevel(logging.INFO)
        # The audit trail is its own record: it must not be duplicated or
        # filtered by whatever the application does with the root logger.
        self.logger.propagate = False
        formatter: logging.Formatter = (
            JsonLinesFormatter() if config.format == "json" else logging.Formatter(TEXT_FORMAT)
        )
        handlers: list[logging.Handler] = []
        if stream is not False:
            handlers.append(logging.StreamHandler(stream or sys.stderr))
        if config.file is not None:
            Path(config.file).parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    config.file,
                    maxBytes=config.max_bytes,
                    backupCount=config.backup_count,
                    encoding="utf-8",
                )
            )
        for handler in handlers:
            handler.setFormatter(formatter)
        # Disk writes happen on a listener thread: a slow disk never stalls probes.
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._queue_handler = logging.handlers.QueueHandler(self._queue)
        self.logger.addHandler(self._queue_handler)
        self._listener = logging.handlers.QueueListener(self._queue, *handlers)
        self._listener.start()

    def close(self) -> None:
        """Write out what is queued and release the files."""
        self.logger.removeHandler(self._queue_handler)
        self._listener.stop()
        for handler in self._listener.handlers:
            handler.close()

    def event(self, level: int, event: str, fields: Mapping[str, Any], style: str = "json") -> None:
        """``style`` picks the seed's rendering of the payload: JSON or key=value."""
        if style == "json":
            payload = json.dumps(dict(fields), default=str, ensure_ascii=False)
        else:
            payload = ", ".join(f"{key}={value}" for key, value in fields.items())
        self.logger.log(
            level, "%s: %s", event, payload, extra={"event": event, "fields": dict(fields)}
        )

    def health_check(
        self, component: str, status: str, latency_ms: float, error: str | None
    ) -> None:
        fields: dict[str, Any] = {
            "component": component,
            "status": status,
            "latency_ms": round(latency_ms, 1),
        }
        if error:
            fields["error"] = error
        self.event(logging.INFO, HEALTH_CHECK, fields)

    def failure_detected(self, component: str, error: str | None) -> None:
        self.event(
            logging.ERROR,
            FAILURE_DETECTED,
            {"component": component, "error": error or "unknown error"},
            style="kv",
        )

    def alert_triggered(self, component: str, severity: str, **fields: Any) -> None:
        self.event(
            logging.WARNING,
            ALERT_TRIGGERED,
            {"component": component, "severity": severity.upper(), **fields},
            style="kv",
        )

    def alert_resolved(self, component: str, **fields: Any) -> None:
        self.event(logging.INFO, ALERT_RESOLVED, {"component": component, **fields}, style="kv")

    def recovery_attempt(self, fields: Mapping[str, Any]) -> None:
        level = logging.INFO if fields.get("success") else logging.ERROR
        self.event(level, RECOVERY_ATTEMPT, fields)

    def escalation(self, component: str, fields: Mapping[str, Any]) -> None:
        self.event(logging.CRITICAL, ESCALATION, {"component": component, **fields})
