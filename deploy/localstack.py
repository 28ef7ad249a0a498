#!/usr/bin/env python3
"""The local stack: the monitor, Prometheus and Alertmanager wired together on loopback.

    python deploy/localstack.py [--config FILE] [--fast] [--port 8000] [--no-install]

Prometheus scrapes the monitor and evaluates alert_rules.yml; Alertmanager routes
the alerts as deploy/alertmanager.yml does, with two local substitutes: Slack
messages and Watchdog heartbeats go to a small sink that prints them here
(deploy/stackconfig.py), and the webhook's bearer token is the monitor's own.

Without a config it first starts the demo pipeline (deploy/demostack.py) and
watches that, in the fast profile. Missing Debian packages (Prometheus,
Alertmanager, the demo's servers) are installed as root; elsewhere one line says
what to install and nothing starts, unless --no-install says to go without them.
Ctrl-C stops everything and leaves nothing running.

The functions that start the processes are also what the end-to-end tests use.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import debian
import demostack
import servers
from stackconfig import SlackSink, render_alertmanager, render_prometheus

from exporter.config import ConfigError, load_config
from recovery_webhook.auth import resolve_token
from recovery_webhook.config import AppConfig

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent


def find_binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def prometheus_binary() -> str | None:
    return find_binary("prometheus")


def alertmanager_binary() -> str | None:
    return find_binary("prometheus-alertmanager", "alertmanager")


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # The child gets its own copy of the descriptor; ours is closed at once.
    with open(log, "ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def start_alertmanager(
    binary: str, config: Path, work: Path, address: str
) -> subprocess.Popen[bytes]:
    """A single Alertmanager (no cluster) with its data and log in ``work``."""
    return start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={work / 'alertmanager'}",
            f"--web.listen-address={address}",
            "--cluster.listen-address=",
        ],
        work / "alertmanager.log",
    )


# Prometheus sends a firing alert to Alertmanager again only after the resend
# delay (1m by default), even when the first send was dropped because the
# Alertmanager was not discovered yet (the first evaluations after start-up):
# the fast profile shortens it as it shortens everything else (1m / 15).
FAST_PROMETHEUS_FLAGS = ["--rules.alert.resend-delay=4s"]


def start_prometheus(
    binary: str, config: Path, work: Path, address: str, fast: bool = False
) -> subprocess.Popen[bytes]:
    """Prometheus with its TSDB and log in ``work``."""
    return start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'prometheus'}",
            f"--web.listen-address={address}",
            *(FAST_PROMETHEUS_FLAGS if fast else []),
        ],
        work / "prometheus.log",
    )


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            # It may exit between the poll and the kill.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def missing_packages() -> list[str]:
    """Prometheus and Alertmanager, when their programs are not here."""
    wanted = []
    if prometheus_binary() is None:
        wanted.append("prometheus")
    if alertmanager_binary() is None:
        wanted.append("prometheus-alertmanager")
    return wanted


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", help="the monitor's config (default: none, and the demo pipeline runs)"
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="1s scrapes and short alert delays, for demos (and a 1s check interval"
        " with the built-in config); the demo pipeline always runs fast",
    )
    parser.add_argument(
        "--no-demo",
        action="store_true",
        help="without a config, watch this host with the built-in config instead of the demo",
    )
    parser.add_argument("--port", type=int, default=8000, help="the monitor's port (8000)")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="install nothing: run without what is missing, and say what that is",
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    # Until the stack runs, SIGTERM is Ctrl-C: what started so far is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    config_file = args.config or env.get("PIPELINE_CONFIG")
    the_demo: demostack.Demo | None = None
    try:
        if not config_file and not args.no_demo:
            # The demo's state, config and servers all live in demo/ of the state
            # directory: the user's own history never sees it.
            state = load_config(AppConfig, None, env).state_dir.resolve()
            the_demo = demostack.Demo(state / "demo")
            the_demo.decide(servers.local_mode(env))
            args.fast = True
        wanted = missing_packages() + (the_demo.packages() if the_demo else [])
        if not args.no_install:
            debian.ensure(wanted, who="make run", hint='or make run ARGS="--no-install"')
        elif wanted:
            print(f"local-stack: not installing {' '.join(wanted)} (--no-install): going without")
    except (ValueError, ConfigError) as exc:
        print(f"local-stack: {exc}", file=sys.stderr)
        return 2
    except (debian.Missing, subprocess.CalledProcessError) as exc:
        print(exc, file=sys.stderr)
        return 1

    if the_demo is not None:
        print("local-stack: starting the demo pipeline", flush=True)
        try:
            the_demo.start(f"http://127.0.0.1:{args.port}")
            config_file = str(the_demo.write_config())
        except (RuntimeError, OSError, KeyboardInterrupt) as exc:
            if not isinstance(exc, KeyboardInterrupt):
                print(f"local-stack: the demo pipeline did not start: {exc}", file=sys.stderr)
            the_demo.stop()
            return 1
        # The demo's own state directory, and none of the user's pipeline settings.
        env["PIPELINE_STATE_DIR"] = str(the_demo.directory)
        for name in ("DATABASE_URL", "DATABASE_URL_FILE", "PIPELINE_CONFIG"):
            env.pop(name, None)
    elif args.fast and not config_file:
        # A config file keeps its own interval (its probe timeouts are sized for it).
        env.setdefault("PIPELINE_CHECK_INTERVAL", "1")
    try:
        # The monitor's own reading of its config: same state directory, same token.
        config = load_config(AppConfig, config_file, env)
    except ConfigError as exc:
        print(f"local-stack: {exc}", file=sys.stderr)
        if the_demo is not None:
            the_demo.stop()
        return 2
    try:
        return run_stack(args, config, config_file, env, the_demo)
    finally:
        if the_demo is not None:
            the_demo.stop()


def run_stack(
    args: argparse.Namespace,
    config: AppConfig,
    config_file: str | None,
    env: dict[str, str],
    the_demo: demostack.Demo | None,
) -> int:
    work = config.state_dir.resolve() / "local-stack"
    work.mkdir(parents=True, exist_ok=True)
    monitor_bin = Path(sys.executable).with_name("pipeline-monitor")
    command = [str(monitor_bin), "run", "--port", str(args.port)]
    if config_file:
        command += ["--config", config_file]

    processes: list[subprocess.Popen[bytes]] = []
    sink = SlackSink()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        monitor = start(command, work / "monitor.log", env)
        processes.append(monitor)
        monitor_url = f"http://127.0.0.1:{args.port}"
        wait_http(f"{monitor_url}/healthz", 30, monitor)
        urls = [
            ("Status page", f"{monitor_url}/"),
            ("Metrics", f"{monitor_url}/metrics"),
            ("API", f"{monitor_url}/api/pipeline/status"),
        ]

        prometheus, alertmanager = prometheus_binary(), alertmanager_binary()
        if prometheus is None or alertmanager is None:
            print(
                "local-stack: Prometheus or Alertmanager is not installed: running the monitor"
                " alone (no alerts, so no automatic repairs)"
            )
        else:
            token = resolve_token(config, env)
            sink.start()
            am_address = f"127.0.0.1:{args.alertmanager_port}"
            timing = {"group_wait": "1s", "group_interval": "5s"} if args.fast else None
            am_config = render_alertmanager(
                work,
                f"{monitor_url}/api/alertmanager/webhook",
                token,
                sink.url,
                sink.heartbeat_url,
                timing,
            )
            am = start_alertmanager(alertmanager, am_config, work, am_address)
            processes.append(am)
            prom_config = render_prometheus(work, f"127.0.0.1:{args.port}", am_address, args.fast)
            prom = start_prometheus(
                prometheus, prom_config, work, f"127.0.0.1:{args.prometheus_port}", args.fast
            )
            processes.append(prom)
            wait_http(f"http://{am_address}/-/ready", 30, am)
            wait_http(f"http://127.0.0.1:{args.prometheus_port}/-/ready", 30, prom)
            urls += [
                ("Prometheus", f"http://127.0.0.1:{args.prometheus_port}/alerts"),
                ("Alertmanager", f"http://{am_address}/"),
            ]

        print("\npipeline-recovery local stack is up:")
        for name, url in urls:
            print(f"  {name:<13} {url}")
        print(f"  Logs          {work}/*.log")
        if the_demo is not None:
            print("\n" + "\n".join(the_demo.describe()))
        print("Slack messages are printed here. Ctrl-C stops everything.\n", flush=True)
        while not stopping.is_set():
            for process in processes + ([the_demo.worker] if the_demo and the_demo.worker else []):
                if process.poll() is not None:
                    print(
                        f"local-stack: {process.args[0]} exited ({process.returncode}); see {work}",
                        file=sys.stderr,
                    )
                    return 1
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"local-stack: {exc}; see the logs in {work}", file=sys.stderr)
        return 1
    finally:
        print("local-stack: stopping", flush=True)
        stop_all(processes)
        if getattr(sink, "_server", None) is not None:
            sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
