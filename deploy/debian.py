#!/usr/bin/env python3
"""Debian packages the two commands need: find what is missing, install it as root.

    python3 deploy/debian.py install PACKAGE...   install the missing ones, or say what to do
    python3 deploy/debian.py venv                 make sure `python3 -m venv` works

Only the Python standard library: this runs before the project's venv exists.
Where it cannot install (not root, or no apt-get) it prints ONE line naming
what to install and exits 1 at once, so neither command waits for something
that will never come. It installs packages and nothing else: no service of an
installed package is configured, and no user or password is changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping

EXIT_MISSING = 1


class Missing(Exception):
    """Packages are missing and cannot be installed here; the message says what to do."""


def installed(package: str) -> bool:
    if not shutil.which("dpkg-query"):
        return False
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.endswith("install ok installed")


def missing(packages: Iterable[str]) -> list[str]:
    return [package for package in dict.fromkeys(packages) if not installed(package)]


def why_not(environ: Mapping[str, str] | None = None) -> str | None:
    """Why this process cannot install packages, or None when it can."""
    path = (os.environ if environ is None else environ).get("PATH", os.defpath)
    if not shutil.which("apt-get", path=path) or not shutil.which("dpkg-query", path=path):
        return "this is not a Debian system with apt-get"
    if os.geteuid() != 0:
        return "not root"
    return None


def one_line(who: str, packages: list[str], reason: str, hint: str = "") -> str:
    what = " ".join(packages)
    line = f"{who}: missing Debian packages: {what} ({reason}): as root, apt-get install {what}"
    return line + (f"; {hint}" if hint else "")


def ensure(packages: Iterable[str], who: str = "install", hint: str = "") -> list[str]:
    """Install the missing packages; return the ones installed. Raises Missing."""
    wanted = list(dict.fromkeys(packages))
    reason = why_not()
    if reason == "this is not a Debian system with apt-get":
        # Without dpkg nothing can be checked: name them all.
        if wanted:
            raise Missing(one_line(who, wanted, reason, hint))
        return []
    absent = missing(wanted)
    if not absent:
        return []
    if reason is not None:
        raise Missing(one_line(who, absent, reason, hint))
    print(f"{who}: installing {' '.join(absent)} (Debian packages)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *absent],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return absent


def venv_package() -> str | None:
    """The package that makes ``python3 -m venv`` work, when it does not yet."""
    try:
        import ensurepip  # noqa: F401 - only its presence matters
    except ImportError:
        return f"python3.{sys.version_info.minor}-venv"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["install"] and len(args) > 1:
            ensure(args[1:], who="make")
            return 0
        if args == ["venv"]:
            package = venv_package()
            if package:
                ensure([package], who="make")
            return 0
    except Missing as exc:
        print(exc, file=sys.stderr)
        return EXIT_MISSING
    except subprocess.CalledProcessError as exc:
        print(f"make: {' '.join(exc.cmd[:2])} failed (exit {exc.returncode})", file=sys.stderr)
        return EXIT_MISSING
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
