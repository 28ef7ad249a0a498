"""Files and directories only the monitor's user may read, whatever the umask.

The state directory holds the history (with what repair commands printed, which
the API shows only with the token), the generated API token and the lock; the
audit log names alerts and errors. Modes are set explicitly, never left to the
umask: a umask of 0 would make them world-readable, one of 0277 would make them
unwritable for the monitor itself.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path) -> Path:
    """Create ``path`` (with its parents) if missing, and make it 0700.

    An existing directory that others may enter is tightened too, unless it is
    not ours or is a shared one (sticky, like /tmp): then the log says so."""
    path.mkdir(parents=True, exist_ok=True)
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode == DIRECTORY_MODE:
        return path
    if info.st_uid == os.geteuid() and not mode & stat.S_ISVTX:
        os.chmod(path, DIRECTORY_MODE)
    elif mode & 0o077:
        log.warning(
            "%s is open to others (mode %04o) and not ours to change; its files stay 0600",
            path,
            mode,
        )
    return path


def open_private(path: Path, flags: int, mode: int = FILE_MODE, tighten: bool = True) -> int:
    """Open ``path``, creating it with exactly ``mode`` if missing; a descriptor.

    ``tighten`` makes an existing file ``mode`` too when others may read it (a
    file from before modes were set); without it, an existing file keeps the mode
    its owner chose (an audit log a log shipper was given read access to)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        created = True
    except FileExistsError:
        fd = os.open(path, (flags & ~os.O_EXCL) | os.O_CLOEXEC)
        created = False
    try:
        current = stat.S_IMODE(os.fstat(fd).st_mode)
        if current != mode and (created or (tighten and current & ~mode)):
            os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def make_private(path: Path, mode: int = FILE_MODE) -> None:
    """``chmod mode`` an existing file that others may read; nothing if it is missing."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        os.chmod(path, mode)
