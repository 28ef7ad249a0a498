"""``storage_failover`` switches to the secondary target when the primary dies,
and the choice outlives a restart of the service.

S3: two moto servers, each a process of its own; the primary's is SIGKILLed.
Filesystem: the primary directory is a tmpfs remounted read-only (as root), so
the canary file cannot be written.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from recovery.recovery_support import build_config, make_alert, metric_value, rule, wait_until

pytestmark = pytest.mark.integration


def _bucket(endpoint: str, name: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)


def _target(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
    }


async def _active_target(app) -> str | None:
    details = (await app.status())["component_details"]["storage"]
    return details["active_storage_target"]


async def _target_metrics(app) -> tuple[float | None, float | None]:
    text = await app.metrics()
    return (
        metric_value(text, "pipeline_storage_active_target", component="storage", target="primary"),
        metric_value(
            text, "pipeline_storage_active_target", component="storage", target="secondary"
        ),
    )


async def _is(app, status: str) -> bool:
    return await app.component_status("storage") == status


async def _attempt_events(app) -> list[dict]:
    return [e for e in await app.history() if e["type"] == "recovery_attempt"]


async def test_s3_failover_to_the_secondary_bucket_survives_a_restart(
    app_factory, state_dir, moto_servers
):
    # Two processes (started off the event loop: it takes moto a second).
    primary, secondary = await asyncio.gather(
        asyncio.to_thread(moto_servers), asyncio.to_thread(moto_servers)
    )
    await asyncio.to_thread(_bucket, primary.url, "articles")
    await asyncio.to_thread(_bucket, secondary.url, "articles-dr")
    config = build_config(
        state_dir,
        {
            "storage": {
                "probes": [
                    {
                        "type": "s3",
                        "timeout": 0.9,
                        **_target(primary.url, "articles"),
                        "secondary": _target(secondary.url, "articles-dr"),
                    }
                ]
            }
        },
        [rule("storage", {"type": "storage_failover"})],
    )
    app = await app_factory(config)
    await wait_until(lambda: _is(app, "healthy"), message="storage healthy on the primary")
    assert await _active_target(app) == "primary"
    assert await _target_metrics(app) == (1.0, 0.0)

    await asyncio.to_thread(primary.kill)
    await wait_until(lambda: _is(app, "unhealthy"), message="the dead primary is seen")

    await app.post_alerts(make_alert("storage"))
    events = await wait_until(lambda: _attempt_events(app), timeout=20, message="the repair")
    (event,) = events
    assert event["status"] == "success", event
    assert event["actions"][0]["output"] == "switched storage storage from primary to secondary"
    assert await app.component_status("storage") == "healthy"
    assert await _active_target(app) == "secondary"
    assert await _target_metrics(app) == (0.0, 1.0)
    detail = (await app.status())["component_details"]["storage"]["probes"]["s3"]["detail"]
    assert detail == "s3://articles-dr (secondary)"
    assert any(
        e["type"] == "storage_target" and e["target"] == "secondary" for e in await app.history()
    )

    # A restart: a new service on the same state directory.
    await app.stop()
    again = await app_factory(config)
    assert await _active_target(again) == "secondary"  # before any probe has run
    assert await _target_metrics(again) == (0.0, 1.0)
    await wait_until(lambda: _is(again, "healthy"), message="healthy on the secondary")
    assert await _active_target(again) == "secondary"
    assert await again.attempts() != []  # the history came along too


@pytest.fixture
def primary_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A primary storage directory, and how it will be broken.

    As root: a small tmpfs, to be remounted read-only (EROFS, as a failing disk
    does). Where mounting is not allowed: a non-root user gets a directory made
    read-only with chmod; root (which ignores modes) loses the directory.
    """
    path = tmp_path / "primary"
    path.mkdir()
    mounted = False
    if os.geteuid() == 0:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        mounted = result.returncode == 0
    how = "remount-ro" if mounted else ("vanish" if os.geteuid() == 0 else "chmod")
    yield path, how
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
    elif path.exists():
        path.chmod(0o755)


def _break(path: Path, how: str) -> None:
    if how == "remount-ro":
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    elif how == "chmod":
        path.chmod(0o555)
    else:
        shutil.rmtree(path)


async def test_filesystem_failover_from_a_read_only_primary(
    app_factory, state_dir, tmp_path, primary_dir
):
    primary, how = primary_dir
    secondary = tmp_path / "secondary"
    secondary.mkdir()
    config = build_config(
        state_dir,
        {
            "storage": {
                "probes": [
                    {
                        "type": "filesystem",
                        "timeout": 0.9,
                        "path": str(primary),
                        "secondary_path": str(secondary),
                        "free_bytes_degraded": None,
                        "free_bytes_unhealthy": None,
                    }
                ]
            }
        },
        [rule("storage", {"type": "storage_failover"})],
    )
    app = await app_factory(config)
    await wait_until(lambda: _is(app, "healthy"), message="storage healthy on the primary")
    assert await _active_target(app) == "primary"

    await asyncio.to_thread(_break, primary, how)
    await wait_until(lambda: _is(app, "unhealthy"), message="the broken primary is seen")
    error = (await app.status())["component_details"]["storage"]["error"]
    if how == "remount-ro":
        assert "Read-only file system" in error, error

    await app.post_alerts(make_alert("storage"))
    events = await wait_until(lambda: _attempt_events(app), timeout=20, message="the repair")
    assert events[0]["status"] == "success", events
    assert await app.component_status("storage") == "healthy"
    assert await _active_target(app) == "secondary"
    assert await _target_metrics(app) == (0.0, 1.0)
    detail = (await app.status())["component_details"]["storage"]["probes"]["filesystem"]
    assert detail["detail"].startswith(f"{secondary} (secondary)")

    await app.stop()
    again = await app_factory(config)
    await wait_until(lambda: _is(again, "healthy"), message="healthy after the restart")
    assert await _active_target(again) == "secondary"
