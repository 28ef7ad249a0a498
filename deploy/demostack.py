"""The demo pipeline that `make run` puts beside the monitor when there is no config.

Its parts: the stand-in validation service and the article worker (deploy/demo.py),
a PostgreSQL for the ``database`` component and a RabbitMQ for the worker's queue,
and a storage directory. For each server it uses the one running here when it
takes the built-in config's login (PostgreSQL ``postgres`` on 127.0.0.1:5432, only
read; RabbitMQ ``guest`` on 127.0.0.1:5672, a queue of the demo's own), or else a
throwaway one (deploy/throwaway.py); ``PIPELINE_LOCAL_SERVERS=own``
always starts throwaway ones (in a temporary directory, removed at the end).
A part it cannot provide is left out of the demo's
config, with a line saying why, rather than shown as down.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import demo
import servers
import throwaway
import yaml

DEMO_PY = Path(demo.__file__).resolve()
DOWN = ["PipelineComponentDown", "ManualRecovery"]
BREAK_COMMAND = "make demo-break"
# The built-in config's logins: what "a server running here" must accept.
LOOK_AT = {
    "database": (servers.POSTGRES, "postgresql://postgres@127.0.0.1:5432/postgres"),
    "queue": (servers.RABBITMQ, "amqp://guest:guest@127.0.0.1:5672/%2F"),
}


@dataclass
class Part:
    """A server the demo needs: which one it uses, or why it goes without."""

    component: str
    kind: servers.Kind
    url: str = ""
    how: str = ""  # "running here", "throwaway", or "" (left out)
    why: str = ""
    server: throwaway.Throwaway | None = None


class Demo:
    """Decide, start, describe and stop the demo pipeline in ``directory``."""

    def __init__(self, directory: Path, python: str = sys.executable) -> None:
        self.directory = directory
        self.python = python
        self.parts: dict[str, Part] = {}
        self.queue = f"pipeline-demo-articles-{secrets.token_hex(3)}"
        self.worker: subprocess.Popen[bytes] | None = None
        self.validator_port = 0
        self.servers_dir: Path | None = None

    # -- what is there --------------------------------------------------------------

    def decide(self, mode: str) -> None:
        for component, (kind, url) in LOOK_AT.items():
            part = Part(component, kind)
            problem = servers.answers(kind, url) if mode == "auto" else f"{servers.MODE_VAR}=own"
            if problem is None:
                part.url, part.how = url, "running here"
            else:
                part.why = problem
            self.parts[component] = part

    def packages(self) -> list[str]:
        """What to install for the throwaway servers it would start."""
        return [
            p.kind.package
            for p in self.parts.values()
            if not p.how and servers.programs(p.kind) is None
        ]

    # -- start and stop -------------------------------------------------------------------

    def start(self, monitor_url: str) -> None:
        """The servers, then the validation service, then the worker (which needs both)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "storage").mkdir(exist_ok=True)
        # Throwaway servers go to a temporary directory, not the state directory:
        # as root, PostgreSQL runs as its own user, who cannot enter /root.
        self.servers_dir = Path(tempfile.mkdtemp(prefix="pipeline-demo-servers-"))
        self.servers_dir.chmod(0o755)
        threads = [
            threading.Thread(target=self._provide, args=(p,), name=p.component)
            for p in self.parts.values()
            if not p.how
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        self.validator_port = servers.free_port()
        queue = self.parts["queue"]
        demo.write_plan(
            self.directory,
            {
                "monitor_url": monitor_url,
                "validator_port": self.validator_port,
                "validator_url": f"http://127.0.0.1:{self.validator_port}",
                "queue": self.queue,
                "amqp_url": queue.url,
            },
        )
        if demo.start_validator(self.directory) != 0:
            raise RuntimeError(f"the demo's validation service did not start; see {self.log}")
        if queue.how:
            self._start_worker()

    def _provide(self, part: Part) -> None:
        assert self.servers_dir is not None  # made by start()
        paths = servers.programs(part.kind)
        if paths is None:
            part.why += f"; {part.kind.name} is not installed (Debian: {part.kind.package})"
            return
        server = throwaway.Throwaway(part.kind, self.servers_dir / part.component, paths)
        part.server = server
        try:
            part.url = server.start()
        except Exception as exc:  # the demo goes on without it, and says why
            part.why += f"; a throwaway {part.kind.name} did not start: {exc}"
            return
        if part.component == "database":
            part.url = part.url.rsplit("/", 1)[0] + "/postgres"
        part.how = "throwaway"

    @property
    def log(self) -> Path:
        return self.directory / "validator.log"

    def _start_worker(self) -> None:
        ready = self.directory / "worker.ready"
        ready.unlink(missing_ok=True)
        with open(self.directory / "worker.log", "ab") as log:
            self.worker = subprocess.Popen(
                [self.python, str(DEMO_PY), "worker", str(self.directory)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the demo's article worker did not start; see {self.directory / 'worker.log'}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Everything the demo started; its queue on a broker that runs here is deleted."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        demo.stop_validator(self.directory)
        queue = self.parts.get("queue")
        if queue is not None and queue.how == "running here":
            with contextlib.suppress(Exception):  # the broker may be gone meanwhile
                import pika

                connection = pika.BlockingConnection(pika.URLParameters(queue.url))
                connection.channel().queue_delete(self.queue)
                connection.close()
        for part in self.parts.values():
            if part.server is not None:
                part.server.stop()
        if self.servers_dir is not None:
            throwaway.remove_tree(self.servers_dir)

    # -- the config and the words ------------------------------------------------------

    def write_config(self) -> Path:
        def probe(kind: str, **options: Any) -> dict[str, Any]:
            return {"probes": [{"type": kind, "timeout": 0.9, **options}]}

        parts = {c: p for c, p in self.parts.items() if p.how}
        targets = [servers.host_port(p.url) for p in parts.values()]
        validator = f"http://127.0.0.1:{self.validator_port}"
        components: dict[str, Any] = {
            "network": probe("tcp", name="reachability", targets=targets or [validator[7:]]),
            "validation_service": probe(
                "http", url=f"{validator}/health", json_match={"status": "ok"}
            ),
        }
        if "database" in parts:
            components["database"] = probe("postgres", dsn=parts["database"].url)
        components["storage"] = probe(
            "filesystem", path=str(self.directory / "storage"), create_missing=True
        )
        if "queue" in parts:
            check = {"name": self.queue, "min_consumers": 1, "backlog_degraded": 20}
            components["queue"] = probe("rabbitmq", url=parts["queue"].url, queues=[check])
        restart = [self.python, str(DEMO_PY), "start-validator", str(self.directory)]
        rules = [
            {
                "alertname": DOWN,
                "component": "validation_service",
                "actions": [{"type": "command", "argv": restart, "timeout": "30s"}],
            },
            *(
                {"alertname": DOWN, "component": c, "actions": [{"type": "reconnect"}]}
                for c in ("network", *parts)
            ),
        ]
        config = {
            "check_interval": 1,
            "state_dir": str(self.directory),
            "components": components,
            "recovery": {
                "retry_delay": "5s",
                "verify_timeout": "15s",
                "verify_interval": "0.5s",
                "rules": rules,
            },
            "audit": {"file": str(self.directory / "audit.log")},
            # The page must show the fault before the repair ends it, seconds later.
            "status_page": {"refresh_seconds": 1},
        }
        path = self.directory / "pipeline.yml"
        path.write_text(
            "# The demo pipeline's config, written by `make run` at each start.\n"
            + yaml.safe_dump(config, sort_keys=False),
            encoding="utf-8",
        )
        return path

    def describe(self) -> list[str]:
        lines = [f"The demo pipeline (no config was given; all of it in {self.directory}):"]
        lines.append(
            f"  validation_service  a stand-in on 127.0.0.1:{self.validator_port}"
            " (the monitor restarts it when it is down)"
        )
        for component, part in self.parts.items():
            if not part.how:
                lines.append(f"  {component:<19} left out: {part.why}")
                continue
            where = servers.host_port(part.url)
            if part.how == "throwaway":
                server = f"a throwaway {part.kind.name} on {where} (removed at the end)"
            else:
                server = f"the {part.kind.name} running here on {where}"
            if component == "database":
                extra = " (only read)" if part.how != "throwaway" else ""
                lines.append(f"  database            {server}{extra}")
            else:
                lines.append(
                    f"  queue               {server}: queue {self.queue}, fed and consumed by"
                    " the demo's article worker"
                )
        lines.append(f"  storage             {self.directory / 'storage'}")
        lines.append(
            f"Try it: `{BREAK_COMMAND}` crashes the demo's validation service. Within seconds"
            " the page says not to publish, PipelineComponentDown fires, Alertmanager calls the"
            " monitor, the monitor restarts the service, and the page is green again."
        )
        lines.append('With a config file (make run ARGS="--config FILE") no demo runs.')
        return lines
