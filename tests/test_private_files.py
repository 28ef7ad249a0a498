"""The private-files helper: exact modes on creation; existing files tightened or
left as their owner chose; the audit log's rotation keeps the current file's mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from exporter.audit import AuditLog
from exporter.config import AuditConfig
from exporter.private_files import make_private, open_private, private_directory

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_exactly_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "token"
    os.close(open_private(path, os.O_WRONLY))
    assert mode(path) == 0o600


def test_an_existing_file_is_tightened_or_kept(tmp_path: Path) -> None:
    shared = tmp_path / "history.sqlite3"
    shared.touch()
    os.chmod(shared, 0o644)
    os.close(open_private(shared, os.O_RDWR))
    assert mode(shared) == 0o600
    chosen = tmp_path / "audit.log"
    chosen.touch()
    os.chmod(chosen, 0o640)
    os.close(open_private(chosen, os.O_WRONLY | os.O_APPEND, tighten=False))
    assert mode(chosen) == 0o640
    make_private(tmp_path / "missing")  # nothing to do, no error


def test_a_directory_is_made_0700_unless_shared(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    assert mode(private_directory(state)) == 0o700
    os.chmod(state, 0o755)
    assert mode(private_directory(state)) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: not ours to close
    assert mode(private_directory(shared)) == 0o1777


def test_audit_rotation_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    config = AuditConfig(file=path, max_bytes=1024, backup_count=2)
    audit = AuditLog(config, stream=False)
    audit.health_check("network", "healthy", 1.0, None)
    audit.close()
    assert mode(path) == 0o600  # new: private
    os.chmod(path, 0o640)  # an operator lets a log shipper's group read it
    audit = AuditLog(config, stream=False)
    try:
        for i in range(100):
            audit.health_check("network", "healthy", float(i), None)
    finally:
        audit.close()
    assert (tmp_path / "audit.log.1").exists()
    assert mode(path) == 0o640
