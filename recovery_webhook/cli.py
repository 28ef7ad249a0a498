"""The ``pipeline-monitor`` command: run, check-config, probe, migrate-history."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from exporter import __version__
from exporter.audit import AuditLog
from exporter.config import ConfigError, format_validation_error, load_config
from exporter.logsafe import OneLineFormatter
from exporter.model import Status
from exporter.monitor import Monitor
from exporter.probes.base import redact_url
from recovery_webhook.config import AppConfig, ServerConfig
from recovery_webhook.schemas import ProbeComponent, ProbeDetail, ProbeReport

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pipeline-monitor",
        description="Probe a publishing pipeline, export /metrics, repair what can be repaired.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve /metrics, the API and the status page")
    run.add_argument("--config", help="YAML config (default: $PIPELINE_CONFIG or built-in)")
    run.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default: server.port, 8000)")
    run.add_argument("--log-level", default="INFO", help="level of the service log (INFO)")

    check = commands.add_parser("check-config", help="validate a config file; exit 2 if bad")
    check.add_argument("file")

    probe = commands.add_parser(
        "probe", help="run every probe once, print the result; exit 1 if anything is unhealthy"
    )
    probe.add_argument("--config", help="YAML config (default: $PIPELINE_CONFIG or built-in)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")

    migrate = commands.add_parser(
        "migrate-history",
        help="copy a single node's SQLite history into a PostgreSQL store (safe to re-run)",
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the PostgreSQL store, postgresql://user@host:port/database",
    )
    migrate.add_argument("--config", help="YAML config whose history file to copy")
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="the SQLite history file (default: the config's, state_dir/history.sqlite3)",
    )

    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return check_config(args.file)
        if args.command == "migrate-history":
            return migrate_history(args.to, args.config, args.source)
        if args.command == "probe":
            return asyncio.run(probe_once(args.config, args.json))
        return run_service(args)
    except ConfigError as exc:
        print(f"pipeline-monitor: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def check_config(path: str) -> int:
    config = load_config(AppConfig, path)
    probes = sum(len(c.probes) for c in config.components.values())
    print(
        f"{path}: OK ({len(config.components)} components, {probes} probes,"
        f" {len(config.recovery.rules)} recovery rules)"
    )
    return 0


async def probe_once(config_path: str | None, as_json: bool) -> int:
    config = load_config(AppConfig, config_path)
    # The audit trail belongs to the service; a one-off probe prints to stdout only.
    monitor = Monitor(
        config, audit=AuditLog(config.audit.model_copy(update={"file": None}), stream=False)
    )
    try:
        await monitor.scheduler.run_cycle()
    finally:
        await monitor.stop()
        monitor.audit.close()
    report = probe_report(monitor)
    if as_json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(format_table(report))
    unhealthy = any(c.status is Status.UNHEALTHY for c in report.components.values())
    return 1 if unhealthy else 0


def probe_report(monitor: Monitor) -> ProbeReport:
    state = monitor.state
    return ProbeReport(
        overall_status=state.overall_status(),
        can_publish=state.can_publish(),
        components={
            name: ProbeComponent(
                status=c.status,
                latency_ms=round(c.latency_seconds * 1000, 1),
                error=c.error,
                probes={probe: ProbeDetail.of(r) for probe, r in c.probes.items()},
            )
            for name, c in state.components.items()
        },
    )


def format_table(report: ProbeReport) -> str:
    rows = [("COMPONENT", "PROBE", "STATUS", "LATENCY", "DETAIL")]
    for name, component in report.components.items():
        for probe, result in component.probes.items():
            rows.append(
                (
                    name,
                    probe,
                    result.status.value.upper(),
                    f"{result.latency_ms:.1f} ms",
                    result.error or result.detail or "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    ]
    verdict = "can publish" if report.can_publish else "CANNOT publish"
    lines.append("")
    lines.append(f"overall: {report.overall_status.value.upper()} ({verdict})")
    return "\n".join(line.rstrip() for line in lines)


def migrate_history(url: str, config_path: str | None, source: str | None) -> int:
    from recovery_webhook.store import StoreError, is_postgres_url, migrate

    if not is_postgres_url(url):
        raise ConfigError(f"--to: expected a postgresql:// URL, got scheme {url.split(':')[0]!r}")
    path = Path(source) if source else load_config(AppConfig, config_path).history_path
    try:
        copied = asyncio.run(migrate.migrate_history(path, url))
    except (StoreError, FileNotFoundError) as exc:
        print(f"pipeline-monitor: migrate-history: {exc}", file=sys.stderr)
        return 1
    print(f"copied {path} into {redact_url(url)}:")
    for line in copied.lines():
        print(f"  {line}")
    return 0


def run_service(args: argparse.Namespace) -> int:
    from recovery_webhook.app import serve  # aiohttp app only when serving
    from recovery_webhook.service import StateDirInUse

    handler = logging.StreamHandler()
    # One record, one line: request paths, alert names and error texts end up in
    # messages, and a line break in one must not start a line of its own.
    handler.setFormatter(OneLineFormatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    config = load_config(AppConfig, args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        server = ServerConfig.model_validate({**config.server.model_dump(), **overrides})
    except ValidationError as exc:
        raise ConfigError(format_validation_error("command line", exc)) from None
    config = config.model_copy(update={"server": server})
    try:
        asyncio.run(serve(config))
    except StateDirInUse as exc:
        print(f"pipeline-monitor: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, the address is not ours
        print(
            f"pipeline-monitor: cannot listen on {server.host}:{server.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
