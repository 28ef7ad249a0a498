"""Throwaway PostgreSQL, MariaDB, Redis and RabbitMQ servers.

A throwaway server is the project's own: started from the Debian package's
programs, with its data, sockets, temporary files and log in a directory of its
own, on a free loopback port, with the tests' credentials (PostgreSQL: user
``postgres``, trust; MariaDB: ``root`` without a password; RabbitMQ:
``guest``/``guest``), and stopped again with everything it started. It never reads
the system's configuration (``/etc/postgresql``, ``/etc/mysql``, ``/etc/rabbitmq``)
and never talks to the system's servers: RabbitMQ even gets an epmd of its own, so
its node name cannot clash with a broker already running here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servers import MARIADB, POSTGRES, START_TIMEOUT, Kind, free_port, port_open


@dataclass
class Throwaway:
    """A server of ``kind`` in ``directory``; ``start()`` returns its URL."""

    kind: Kind
    directory: Path
    paths: dict[str, str]
    port: int = 0
    url: str = ""
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _user: str | None = None

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._user = self._run_as()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            for parent in self.directory.resolve().parents:
                if not os.stat(parent).st_mode & 0o001:
                    raise RuntimeError(
                        f"{self.kind.name} runs as {self._user}, who cannot reach {self.directory}"
                        f" ({parent} is closed to other users; set TMPDIR elsewhere)"
                    )
        self.port = free_port()
        try:
            getattr(self, f"_start_{self.kind.key}")()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _run_as(self) -> str | None:
        """Root runs PostgreSQL and MariaDB (which refuse root) as the package's user."""
        if os.geteuid() != 0 or self.kind not in (POSTGRES, MARIADB):
            return None
        for user in (self.kind.system_user, "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(user)
                return user
        raise RuntimeError(f"no user to run {self.kind.name} as (it refuses to run as root)")

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        # Temporary files too stay in the server's directory (MariaDB makes some;
        # the caller's TMPDIR may be closed to the server's user).
        return {**(os.environ if env is None else env), "TMPDIR": str(self.directory)}

    def _run(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        env = self._env(env)
        with open(self.log, "ab") as log:
            done = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, user=self._user, check=False
            )
        if done.returncode != 0:
            name = Path(argv[0]).name
            raise RuntimeError(f"{name} failed (exit {done.returncode}); {self._tail()}")

    def _spawn(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        env = self._env(env)
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                user=self._user,
                start_new_session=True,  # its own group: stop() ends its children too
            )
        self._processes.append(process)

    def _wait_port(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(port):
            for process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{self.kind.name} exited (status {process.returncode}); {self._tail()}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.kind.name} not listening after {START_TIMEOUT:g}s; {self._tail()}"
                )
            time.sleep(0.1)

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return f"no log at {self.log}"
        return f"last lines of {self.log}: " + " | ".join(lines[-3:])

    # PostgreSQL: initdb + pg_ctl, trust for user postgres, database "test".
    def _start_postgres(self) -> None:
        data = self.directory / "data"
        self._run(
            [
                self.paths["initdb"],
                "--pgdata",
                str(data),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            " -c unix_socket_directories='' -c fsync=off -c max_connections=200"
        )
        log = self.directory / "postgres.log"
        pg_ctl = self.paths["pg_ctl"]
        self._run(
            [pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-o", options, "-l", f"{log}"]
        )
        port = str(self.port)
        self._run([self.paths["createdb"], "-h", "127.0.0.1", "-p", port, "-U", "postgres", "test"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _stop_postgres(self) -> None:
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run([self.paths["pg_ctl"], "stop", "-w", "-m", "immediate", "-D", str(data)])

    # MariaDB: mariadb-install-db, root without a password, database "test".
    def _start_mysql(self) -> None:
        data = self.directory / "data"
        user = self._user or pwd.getpwuid(os.geteuid()).pw_name
        self._run(
            [
                self.paths["mariadb-install-db"],
                "--no-defaults",
                f"--datadir={data}",
                f"--user={user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
        )
        self._spawn(
            [
                self.paths["mariadbd"],
                "--no-defaults",
                f"--datadir={data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.directory / 'mysqld.sock'}",
                f"--pid-file={self.directory / 'mysqld.pid'}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=200",
            ]
        )
        self._wait_port(self.port)
        self._run(
            [
                self.paths["mariadb"],
                "--no-defaults",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-uroot",
                "-e",
                "CREATE DATABASE IF NOT EXISTS test",
            ]
        )
        self.url = f"mysql://root@127.0.0.1:{self.port}/test"

    # Redis: no persistence, loopback only.
    def _start_redis(self) -> None:
        self._spawn(
            [
                self.paths["redis-server"],
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]
        )
        self._wait_port(self.port)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    # RabbitMQ: its own epmd, node name, cookie (HOME), config and plugins file.
    def _start_rabbitmq(self) -> None:
        base = self.directory
        epmd_port, dist_port = free_port(), free_port()
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n", encoding="utf-8"
        )
        (base / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        (base / "rabbitmq-env.conf").write_text("", encoding="utf-8")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(base),
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": f"pipeline-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self._spawn([self.paths["epmd"], "-port", str(epmd_port), "-address", "127.0.0.1"], env)
        self._wait_port(epmd_port)
        # Debian's /usr/sbin/rabbitmq-server switches to the system's rabbitmq
        # user and its directories; the script behind it runs the broker as we are.
        server = self.paths["rabbitmq-server"]
        behind = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        if server.startswith("/usr/sbin/") and behind.exists():
            server = str(behind)
        self._spawn([server], env)
        self._wait_port(self.port)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def stop(self) -> None:
        """Stop everything it started (its processes' groups); leave the directory."""
        if self.kind is POSTGRES:
            self._stop_postgres()
        # The broker first, its epmd last (the reverse of the start).
        for process in reversed(self._processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
