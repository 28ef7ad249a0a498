#!/usr/bin/env python3
"""The test servers: decide, for each, to use the one running here or to start our own.

    python deploy/testservers.py [--install-only] [--look-at KIND=URL]... [-- COMMAND...]

For PostgreSQL, MariaDB, Redis and RabbitMQ, in this order of preference:

given     PIPELINE_TEST_POSTGRES_DSN (_MYSQL_DSN, _REDIS_URL, _AMQP_URL) is set: use it.
running   a server on the tests' default address (127.0.0.1:5432, 3306, 6379, 5672)
          accepts the tests' login: use it as it is (its users, passwords and
          configuration are never changed).
throwaway otherwise, and always with PIPELINE_LOCAL_SERVERS=own: a throwaway server
          from the Debian package's programs (deploy/servers.py), in a temporary
          directory, on a free loopback port, stopped when COMMAND ends.

Missing packages (those of the throwaway servers, and any PACKAGE named with
--install-only) are installed when root on Debian; otherwise ONE line says what to
install and the program exits 1 before starting anything. COMMAND then runs with
the PIPELINE_TEST_* variables pointing at the chosen servers, and its exit status
is this program's. --look-at changes where a running server is looked for.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debian  # noqa: E402 - deploy/ is not a package
import servers  # noqa: E402
import throwaway  # noqa: E402

ENV_VARS = {
    "postgres": "PIPELINE_TEST_POSTGRES_DSN",
    "mysql": "PIPELINE_TEST_MYSQL_DSN",
    "redis": "PIPELINE_TEST_REDIS_URL",
    "rabbitmq": "PIPELINE_TEST_AMQP_URL",
}
MODE_VAR = servers.MODE_VAR
WHO = "test servers"


class Stop(Exception):
    """Nothing can be started; the message is the one line to print."""


@dataclass
class Choice:
    kind: servers.Kind
    source: str  # given, running, throwaway
    url: str  # the URL in use (a throwaway's: filled in once started)
    reason: str


def mode_of(environ: Mapping[str, str]) -> str:
    try:
        return servers.local_mode(environ)
    except ValueError as exc:
        raise Stop(f"{WHO}: {exc}") from None


def decide(environ: Mapping[str, str], look_at: Mapping[str, str]) -> list[Choice]:
    mode = mode_of(environ)
    choices = []
    for key, kind in servers.KINDS.items():
        given = environ.get(ENV_VARS[key])
        if given:
            problem = servers.answers(kind, given)
            if problem:
                raise Stop(f"{WHO}: {ENV_VARS[key]} is set, but {problem}")
            choices.append(Choice(kind, "given", given, f"{ENV_VARS[key]} is set"))
            continue
        if mode == "own":
            choices.append(Choice(kind, "throwaway", "", f"{MODE_VAR}=own"))
            continue
        url = look_at.get(key, kind.default_url)
        problem = servers.answers(kind, url)
        if problem is None:
            choices.append(Choice(kind, "running", url, "it accepts the tests' login"))
        else:
            choices.append(Choice(kind, "throwaway", "", problem))
    return choices


def packages_needed(choices: list[Choice], environ: Mapping[str, str]) -> list[str]:
    return [
        c.kind.package
        for c in choices
        if c.source == "throwaway" and servers.programs(c.kind, environ) is None
    ]


def install(choices: list[Choice], extra: list[str], environ: Mapping[str, str]) -> None:
    """Install what is missing, or raise Stop / debian.Missing with the one line to print."""
    debian.ensure(
        [*extra, *packages_needed(choices, environ)],
        who="make test",
        hint=f"or point {', '.join(ENV_VARS.values())} at servers of your own",
    )
    for choice in choices:
        if choice.source == "throwaway" and servers.programs(choice.kind, environ) is None:
            # Installed, yet not found: a PATH that hides them, or another layout.
            raise Stop(
                f"make test: {choice.kind.name}'s programs ({', '.join(choice.kind.programs)})"
                f" are not on PATH nor in {os.pathsep.join(servers.DEBIAN_DIRS)}; set"
                f" PIPELINE_SERVER_PATH to where they are, or install {choice.kind.package}"
            )


def describe(choice: Choice) -> str:
    url = servers.redact(choice.url) if choice.url else "a throwaway server"
    return f"{WHO}: {choice.kind.name:<10} {choice.source:<9} {url}  ({choice.reason})"


def start_own(choices: list[Choice], base: Path) -> list[throwaway.Throwaway]:
    """Start the throwaway servers side by side (RabbitMQ alone takes seconds)."""
    started: list[throwaway.Throwaway] = []
    errors: list[str] = []

    def one(choice: Choice) -> None:
        paths = servers.programs(choice.kind)
        if paths is None:  # installed just before, so this is unexpected
            errors.append(f"{choice.kind.name}: its programs are missing")
            return
        server = throwaway.Throwaway(choice.kind, base / choice.kind.key, paths)
        started.append(server)
        try:
            choice.url = server.start()
        except Exception as exc:  # reported with the others, after all threads end
            errors.append(f"{choice.kind.name}: {exc}")

    own = [c for c in choices if c.source == "throwaway"]
    threads = [threading.Thread(target=one, args=(c,), name=c.kind.key) for c in own]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        stop_all(started)
        raise Stop(f"{WHO}: could not start: " + "; ".join(errors))
    return started


def stop_all(started: list[throwaway.Throwaway]) -> None:
    for server in started:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--install-only",
        nargs="*",
        metavar="PACKAGE",
        help="install what the tests need (these packages too) and exit",
    )
    parser.add_argument("--look-at", action="append", default=[], metavar="KIND=URL")
    parser.add_argument("command", nargs="*", help="what to run with the servers (after --)")
    args = parser.parse_args(argv)
    look_at = dict(item.split("=", 1) for item in args.look_at)
    unknown = set(look_at) - set(servers.KINDS)
    if unknown:
        parser.error(f"--look-at: unknown kind {', '.join(sorted(unknown))}")
    if args.install_only is None and not args.command:
        parser.error("give a COMMAND (after --) or --install-only")

    environ = dict(os.environ)
    try:
        choices = decide(environ, look_at)
        if args.install_only is None:
            for choice in choices:
                if choice.source != "throwaway":
                    print(describe(choice), flush=True)
        install(choices, args.install_only or [], environ)
    except (Stop, debian.Missing) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.install_only is not None:
        return 0

    # A signal ends the command; the servers are still stopped (finally below).
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    base = Path(tempfile.mkdtemp(prefix="pipeline-test-servers-"))
    base.chmod(0o755)  # the servers that refuse root run as their package's user
    started: list[throwaway.Throwaway] = []
    try:
        started = start_own(choices, base)
        for choice in choices:
            if choice.source == "throwaway":
                print(describe(choice), flush=True)
        env = {**environ, **{ENV_VARS[c.kind.key]: c.url for c in choices}}
        return subprocess.run(args.command, env=env, check=False).returncode
    except Stop as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop_all(started)
        if started:
            print(f"{WHO}: stopped the throwaway servers", flush=True)
        throwaway.remove_tree(base)


if __name__ == "__main__":
    sys.exit(main())
