"""The servers the tests and the demo need: their kinds, programs and ports, and a check
of one that runs here.

``answers(kind, url)`` says whether a server already running accepts a login; it
needs the project's drivers (the venv), the rest only the standard library.
Throwaway servers of these kinds are in deploy/throwaway.py.
"""

from __future__ import annotations

import glob
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Where Debian's packages keep the programs that are not on PATH
# (PostgreSQL's are versioned). PIPELINE_SERVER_PATH replaces this list.
DEBIAN_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/sbin", "/usr/lib/rabbitmq/bin")
START_TIMEOUT = 90.0  # RabbitMQ needs 5-15 s on a busy 2-core machine; this is the bound


@dataclass(frozen=True)
class Kind:
    """One kind of server: its name, package, programs and the tests' default address."""

    key: str
    name: str
    package: str
    programs: tuple[str, ...]
    default_url: str
    system_user: str  # the package's user; a server that refuses root runs as it

    @property
    def default_address(self) -> str:
        parts = urlsplit(self.default_url)
        return f"{parts.hostname}:{parts.port}"


POSTGRES = Kind(
    "postgres",
    "PostgreSQL",
    "postgresql",
    ("initdb", "pg_ctl", "createdb"),
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgres",
)
MARIADB = Kind(
    "mysql",
    "MariaDB",
    "mariadb-server",
    ("mariadb-install-db", "mariadbd", "mariadb"),
    "mysql://root@127.0.0.1:3306/test",
    "mysql",
)
REDIS = Kind(
    "redis", "Redis", "redis-server", ("redis-server",), "redis://127.0.0.1:6379/0", "redis"
)
RABBITMQ = Kind(
    "rabbitmq",
    "RabbitMQ",
    "rabbitmq-server",
    ("rabbitmq-server", "epmd"),
    "amqp://guest:guest@127.0.0.1:5672/%2F",
    "rabbitmq",
)
KINDS = {kind.key: kind for kind in (POSTGRES, MARIADB, REDIS, RABBITMQ)}


# PIPELINE_LOCAL_SERVERS: "auto" uses a server already running here when it fits
# and starts a throwaway one otherwise; "own" always starts throwaway ones.
MODE_VAR = "PIPELINE_LOCAL_SERVERS"
MODES = ("auto", "own")


def local_mode(environ: Mapping[str, str] | None = None) -> str:
    """The mode from the environment; ValueError with the one line to print when bad."""
    mode = (os.environ if environ is None else environ).get(MODE_VAR) or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE_VAR}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


# -- finding programs and ports ------------------------------------------------------


def search_path(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    dirs = env.get("PATH", os.defpath).split(os.pathsep)
    extra = env.get("PIPELINE_SERVER_PATH")
    patterns = extra.split(os.pathsep) if extra is not None else list(DEBIAN_DIRS)
    for pattern in patterns:
        # The newest PostgreSQL first when several are installed.
        dirs += sorted(glob.glob(pattern), reverse=True) if pattern else []
    return [d for d in dict.fromkeys(dirs) if d]


def find_program(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    for directory in search_path(environ):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def programs(kind: Kind, environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """All of the kind's programs, from one directory for PostgreSQL; None if any is missing."""
    if kind is POSTGRES:
        # initdb, pg_ctl and createdb must be of the same version.
        found = find_program("initdb", environ)
        if found is None:
            return None
        bindir = Path(found).resolve().parent  # /usr/local/bin/initdb may be a link
        paths = {name: str(bindir / name) for name in kind.programs}
        return paths if all(os.access(p, os.X_OK) for p in paths.values()) else None
    found_paths = {name: find_program(name, environ) for name in kind.programs}
    paths = {name: p for name, p in found_paths.items() if p is not None}
    return paths if len(paths) == len(kind.programs) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redact(url: str) -> str:
    """``url`` without its password (the throwaway ones have none worth hiding, others may)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- is a running server usable? ---------------------------------------------------------


def answers(kind: Kind, url: str, timeout: float = 3.0) -> str | None:
    """None when the server at ``url`` accepts the login in it, else why not (one line)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    if not port_open(port, host):
        return f"nothing answers on {host}:{port}"
    try:
        if kind is POSTGRES:
            import psycopg

            with psycopg.connect(url, connect_timeout=int(timeout)) as conn:
                conn.execute("SELECT 1")
        elif kind is MARIADB:
            import pymysql

            pymysql.connect(
                host=host,
                port=port,
                user=parts.username or "root",
                password=parts.password or "",
                database=parts.path.lstrip("/") or None,
                connect_timeout=timeout,
            ).close()
        elif kind is REDIS:
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            import pika

            params = pika.URLParameters(url)
            params.socket_timeout = params.stack_timeout = timeout
            params.connection_attempts = 1
            pika.BlockingConnection(params).close()
    except Exception as exc:  # any driver's error means "not usable"; say which
        text = " ".join(str(exc).split()) or type(exc).__name__
        return (
            f"{host}:{port} answers but not as {kind.name} accepting the tests' login"
            f" ({text[:160]})"
        )
    return None
