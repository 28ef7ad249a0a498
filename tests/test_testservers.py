"""What `make test` decides about its servers, driven for real (deploy/testservers.py).

The program runs as `make test` runs it, as a subprocess, with its inputs changed
the way a user's machine differs: the servers' programs hidden from PATH, apt-get
missing, not root, the tests' ports taken by something else, or a server that
accepts the tests' login. It must choose the running server when it is usable,
start throwaway ones otherwise (and stop them after), and where it can neither,
say in one line what to install and stop before running anything.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, free_port, host_port

pytestmark = pytest.mark.integration

PROGRAM = REPO / "deploy" / "testservers.py"
ENV_VARS = (
    "PIPELINE_TEST_POSTGRES_DSN",
    "PIPELINE_TEST_MYSQL_DSN",
    "PIPELINE_TEST_REDIS_URL",
    "PIPELINE_TEST_AMQP_URL",
)
PACKAGES = "postgresql mariadb-server redis-server rabbitmq-server"

# The child reports what it was given, and that it ran at all.
REPORT = (
    f"import json, os, sys; json.dump({{k: os.environ.get(k) for k in {ENV_VARS!r}}},"
    " open(sys.argv[1], 'w'))"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the test servers `make test` itself was given."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.pop("PIPELINE_LOCAL_SERVERS", None)
    env.pop("PIPELINE_SERVER_PATH", None)
    return {**env, **extra}


def run(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROGRAM), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port where something listens that is no database: it accepts, then hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = int(server.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(5)
    server.close()


def test_without_the_servers_programs_or_apt_it_names_the_packages_and_runs_nothing(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    marker = tmp_path / "ran.json"
    env = clean_env(PATH=str(empty), PIPELINE_SERVER_PATH="", PIPELINE_LOCAL_SERVERS="own")
    done = run(["--", sys.executable, "-c", REPORT, str(marker)], env, timeout=60)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (
        f"make test: missing Debian packages: {PACKAGES} (this is not a Debian system with"
        f" apt-get): as root, apt-get install {PACKAGES}; or point {', '.join(ENV_VARS)} at"
        " servers of your own"
    )
    assert not marker.exists(), "the command ran although its servers are missing"
    assert "installing" not in done.stdout


def test_without_root_it_names_the_package_to_install(tmp_path: Path) -> None:
    """As a user who may not install: one line, exit 1 (the package is not installed here)."""
    package = "hello"  # GNU hello: in every Debian release, installed nowhere it matters
    installed = subprocess.run(["dpkg-query", "-W", package], capture_output=True, check=False)
    assert installed.returncode != 0, f"{package} is installed here; pick another package"
    # The standard library suffices (debian.py runs before the venv exists). A user
    # other than root may reach neither this venv's interpreter nor this checkout
    # (under /root, say): Debian's python3 runs a copy in a directory open to all.
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    user = "nobody" if os.geteuid() == 0 else None
    public = Path(tempfile.mkdtemp())
    try:
        public.chmod(0o755)
        script = public / "debian.py"
        shutil.copy(REPO / "deploy" / "debian.py", script)
        script.chmod(0o644)
        done = subprocess.run(
            [python, str(script), "install", package],
            capture_output=True,
            text=True,
            timeout=60,
            user=user,
            cwd="/",
            check=False,
        )
    finally:
        shutil.rmtree(public)
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        f"make: missing Debian packages: {package} (not root): as root, apt-get install {package}"
    ]


def test_a_server_that_accepts_the_tests_login_is_used_as_it_is(
    tmp_path: Path, pg_dsn: str, mysql_dsn: str, redis_url: str, amqp_url: str
) -> None:
    marker = tmp_path / "ran.json"
    urls = {"postgres": pg_dsn, "mysql": mysql_dsn, "redis": redis_url, "rabbitmq": amqp_url}
    look_at = [f"--look-at={kind}={url}" for kind, url in urls.items()]
    done = run([*look_at, "--", sys.executable, "-c", REPORT, str(marker)], clean_env())
    assert done.returncode == 0, done
    given = json.loads(marker.read_text())
    assert given == dict(zip(ENV_VARS, urls.values(), strict=True))
    running = [line for line in done.stdout.splitlines() if " running " in line]
    assert len(running) == 4, done.stdout
    assert "throwaway" not in done.stdout


def test_ports_taken_by_something_else_get_throwaway_servers_that_stop_after(
    tmp_path: Path, taken_port: int
) -> None:
    """Something else on the tests' ports: own servers on free ports, gone afterwards."""
    for name in ("initdb", "mariadb-install-db", "redis-server", "rabbitmq-server"):
        assert _program(name), f"{name} is missing: `make test-deps` installs the servers"
    marker = tmp_path / "ran.json"
    kinds = ("postgres", "mysql", "redis", "rabbitmq")
    defaults = {
        "postgres": f"postgresql://postgres@127.0.0.1:{taken_port}/test",
        "mysql": f"mysql://root@127.0.0.1:{taken_port}/test",
        "redis": f"redis://127.0.0.1:{taken_port}/0",
        "rabbitmq": f"amqp://guest:guest@127.0.0.1:{taken_port}/%2F",
    }
    look_at = [f"--look-at={kind}={defaults[kind]}" for kind in kinds]
    check = REPORT + "; " + _CONNECT
    # A short temporary directory of its own: the servers' sockets live there.
    tmp = Path(tempfile.mkdtemp())
    tmp.chmod(0o755)  # as root, PostgreSQL and MariaDB run as their own users
    try:
        env = clean_env(TMPDIR=str(tmp))
        done = run([*look_at, "--", sys.executable, "-c", check, str(marker)], env)
        left = list(tmp.iterdir())
    finally:
        shutil.rmtree(tmp)
    assert done.returncode == 0, done
    given = json.loads(marker.read_text())
    for name, line in zip(("PostgreSQL", "MariaDB", "Redis", "RabbitMQ"), kinds, strict=True):
        assert (
            f"127.0.0.1:{taken_port} answers but not as {name} accepting the tests' login"
            in done.stdout
        ), (line, done.stdout)
    ports = [host_port(url)[1] for url in given.values()]
    assert taken_port not in ports and len(set(ports)) == 4, given
    assert "stopped the throwaway servers" in done.stdout
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert left == [], "the throwaway servers' directory is still there"


def test_a_given_server_that_does_not_answer_stops_it_at_once(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(PIPELINE_TEST_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    done = run(["--", sys.executable, "-c", "raise SystemExit(3)"], env, timeout=60)
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        f"test servers: PIPELINE_TEST_REDIS_URL is set, but nothing answers on 127.0.0.1:{port}"
    ]


def test_a_bad_mode_is_refused(tmp_path: Path) -> None:
    done = run(["--", "true"], clean_env(PIPELINE_LOCAL_SERVERS="mine"), timeout=60)
    assert done.returncode == 1
    assert "PIPELINE_LOCAL_SERVERS='mine': expected one of auto, own" in done.stderr


# Each server answers at the URL the child was given, with the tests' login.
_CONNECT = """
import psycopg, pymysql, redis, pika
from urllib.parse import urlsplit
e = os.environ
psycopg.connect(e['PIPELINE_TEST_POSTGRES_DSN']).close()
m = urlsplit(e['PIPELINE_TEST_MYSQL_DSN'])
pymysql.connect(host=m.hostname, port=m.port, user='root', password='', database='test').close()
redis.Redis.from_url(e['PIPELINE_TEST_REDIS_URL']).ping()
pika.BlockingConnection(pika.URLParameters(e['PIPELINE_TEST_AMQP_URL'])).close()
"""


def _program(name: str) -> str | None:
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        import servers  # deploy/ is not a package
    finally:
        sys.path.pop(0)
    found: str | None = servers.find_program(name)
    return found or shutil.which(name)


def test_make_run_without_apt_names_what_to_install_and_starts_nothing(tmp_path: Path) -> None:
    """`make run`'s stack without Prometheus' programs nor apt-get: one line, exit 1."""
    empty = tmp_path / "bin"
    empty.mkdir()
    config = tmp_path / "pipeline.yml"
    config.write_text("components: {storage: {probes: [{type: filesystem, path: /tmp}]}}\n")
    port = free_port()
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "localstack.py"), "--config", str(config)]
        + ["--port", str(port)],
        env=clean_env(PATH=str(empty), PIPELINE_STATE_DIR=str(tmp_path / "state")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        "make run: missing Debian packages: prometheus prometheus-alertmanager (this is not a"
        " Debian system with apt-get): as root, apt-get install prometheus"
        ' prometheus-alertmanager; or make run ARGS="--no-install"'
    ]
    assert not (tmp_path / "state" / "local-stack").exists(), "something was started"
