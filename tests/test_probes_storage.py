"""s3 and filesystem probes: a real S3 API (moto's server on loopback) and real
directories, made to fail for real: a missing bucket, refused and frozen
endpoints, wrong keys against a moto server that enforces IAM authentication, a
tmpfs that is full or remounted read-only, a file operation that blocks, and the
fail-over to a secondary bucket or directory."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from faults import FaultProxy, HangingListener
from helpers import Harness, MotoServer, assert_no_secret, host_port, start_moto_server

from exporter.model import ProbeResult, Status
from exporter.probes.filesystem import CANARY_PREFIX

pytestmark = pytest.mark.integration

SLACK = 0.5
TIMED_OUT = re.compile(r"timed out|no answer|timeout", re.IGNORECASE)
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"

Probes = Callable[..., Harness]


def s3_probe(server: MotoServer, bucket: str, **extra: object) -> dict[str, object]:
    return {
        "type": "s3",
        "bucket": bucket,
        "endpoint_url": server.endpoint,
        "access_key_id": "testing-access-key",
        "secret_access_key": SECRET_KEY,
        **extra,
    }


def free_bytes(result: ProbeResult) -> float:
    (value,) = [m.value for m in result.measurements if m.metric == "storage_free_bytes"]
    return value


# -- S3 ----------------------------------------------------------------------------------


async def test_s3_canary_round_trip(
    probe_harness: Probes, s3_server: MotoServer, s3_bucket: str
) -> None:
    run = await probe_harness(s3_probe(s3_server, s3_bucket, key_prefix="health/")).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert run.result.detail == f"s3://{s3_bucket} (primary)"
    # The canary was written under the prefix and removed again.
    listing = s3_server.client().list_objects_v2(Bucket=s3_bucket)
    assert listing.get("KeyCount") == 0


async def test_s3_two_monitors_share_a_bucket(
    probe_harness: Probes, s3_server: MotoServer, s3_bucket: str
) -> None:
    """An HA pair (or a run finishing after its timeout) must not delete the other's canary."""
    first = probe_harness(s3_probe(s3_server, s3_bucket))
    second = probe_harness(s3_probe(s3_server, s3_bucket))
    for _ in range(5):
        runs = await asyncio.gather(first.run(), second.run())
        assert [r.result.status for r in runs] == [Status.HEALTHY] * 2, runs
    listing = await asyncio.to_thread(s3_server.client().list_objects_v2, Bucket=s3_bucket)
    assert listing.get("KeyCount") == 0


async def test_s3_missing_bucket(probe_harness: Probes, s3_server: MotoServer) -> None:
    run = await probe_harness(s3_probe(s3_server, "no-such-bucket-pm")).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == "bucket 'no-such-bucket-pm' does not exist"


async def test_s3_endpoint_refused(probe_harness: Probes, unused_port: int) -> None:
    probe = {
        "type": "s3",
        "bucket": "articles",
        "endpoint_url": f"http://127.0.0.1:{unused_port}",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": SECRET_KEY,
    }
    run = await probe_harness(probe).run()
    assert run.result.status is Status.UNHEALTHY
    assert (run.result.error or "").startswith(
        f'Could not connect to the endpoint URL: "http://127.0.0.1:{unused_port}/articles/'
    ), run.result.error
    assert_no_secret(run.result.error, SECRET_KEY)


async def test_s3_silent_endpoint_ends_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener() as listener:
        probe = {
            "type": "s3",
            "bucket": "articles",
            "endpoint_url": f"http://{listener.address}",
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key": SECRET_KEY,
            "timeout": 0.5,
        }
        run = await probe_harness(probe).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert TIMED_OUT.search(run.result.error or ""), run.result.error


async def test_s3_frozen_endpoint_ends_at_the_timeout_and_recovers(
    probe_harness: Probes, s3_server: MotoServer, s3_bucket: str
) -> None:
    async with FaultProxy(*host_port(s3_server.endpoint)) as proxy:
        probe = s3_probe(s3_server, s3_bucket, timeout=1)
        probe["endpoint_url"] = f"http://{proxy.address}"
        harness = probe_harness(probe)
        assert (await harness.run()).result.status is Status.HEALTHY
        await proxy.hang()
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 1 + SLACK
        assert TIMED_OUT.search(run.result.error or ""), run.result.error
        await proxy.pass_through()
        assert (await harness.run()).result.status is Status.HEALTHY


@dataclass
class AuthS3:
    server: MotoServer
    bucket: str
    access_key_id: str
    secret_access_key: str


@pytest.fixture(scope="module")
def s3_with_auth() -> Iterator[AuthS3]:
    """A moto server of its own that checks signatures and IAM policies.

    moto accepts any key until told otherwise: an IAM user with an S3 policy is
    created first, then /moto-api/reset-auth turns authentication on.
    """
    server = start_moto_server()
    try:
        iam = boto3.session.Session().client(
            "iam",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="probe")
        key = iam.create_access_key(UserName="probe")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="probe", PolicyName="s3", PolicyDocument=json.dumps(policy))
        bucket = server.create_bucket()
        request = urllib.request.Request(
            f"{server.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["status"] == "ok"
        yield AuthS3(server, bucket, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


async def test_s3_wrong_keys_against_an_authenticating_server(
    probe_harness: Probes, s3_with_auth: AuthS3
) -> None:
    auth = s3_with_auth
    base = {"type": "s3", "bucket": auth.bucket, "endpoint_url": auth.server.endpoint}
    good = {
        **base,
        "access_key_id": auth.access_key_id,
        "secret_access_key": auth.secret_access_key,
    }
    assert (await probe_harness(good).run()).result.status is Status.HEALTHY

    wrong_secret = {**good, "secret_access_key": SECRET_KEY}
    run = await probe_harness(wrong_secret).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == (
        f"access denied to bucket {auth.bucket!r} (SignatureDoesNotMatch): check the credentials"
    )

    unknown_key = {**good, "access_key_id": "AKIAUNKNOWNKEY000000"}
    run = await probe_harness(unknown_key).run()
    assert run.result.error == (
        f"access denied to bucket {auth.bucket!r} (InvalidAccessKeyId): check the credentials"
    )
    assert_no_secret(run.component.error, SECRET_KEY, auth.secret_access_key)


async def test_s3_secrets_from_files(
    probe_harness: Probes, s3_with_auth: AuthS3, tmp_path: Path
) -> None:
    auth = s3_with_auth
    (tmp_path / "key-id").write_text(auth.access_key_id + "\n")
    (tmp_path / "secret").write_text(auth.secret_access_key + "\n")
    probe = {
        "type": "s3",
        "bucket": auth.bucket,
        "endpoint_url": auth.server.endpoint,
        "access_key_id_file": str(tmp_path / "key-id"),
        "secret_access_key_file": str(tmp_path / "secret"),
    }
    assert (await probe_harness(probe).run()).result.status is Status.HEALTHY


async def test_s3_fails_over_to_the_secondary_bucket(
    probe_harness: Probes, s3_server: MotoServer, s3_bucket: str
) -> None:
    probe = s3_probe(s3_server, "primary-is-missing-pm")
    probe["secondary"] = {
        "bucket": s3_bucket,
        "endpoint_url": s3_server.endpoint,
        "access_key_id": "testing-access-key",
        "secret_access_key": SECRET_KEY,
    }
    harness = probe_harness(probe)
    scheduler, state = harness.monitor.scheduler, harness.monitor.state.components["dep"]
    assert state.targets == ("primary", "secondary")
    assert state.active_target == "primary"
    run = await harness.run()
    assert run.result.status is Status.UNHEALTHY

    with pytest.raises(ValueError, match="unknown storage target"):
        scheduler.switch_target("dep", "tertiary")
    scheduler.switch_target("dep", "secondary")
    assert state.active_target == "secondary"
    run = await harness.run()
    assert run.result.status is Status.HEALTHY, run.result
    assert run.result.detail == f"s3://{s3_bucket} (secondary)"

    registry = harness.monitor.registry
    labels = {"component": "dep"}
    active = "pipeline_storage_active_target"
    assert registry.get_sample_value(active, {**labels, "target": "secondary"}) == 1
    assert registry.get_sample_value(active, {**labels, "target": "primary"}) == 0


# -- filesystem ---------------------------------------------------------------------------


class Tmpfs:
    """A tmpfs of a few KiB mounted for one test (the tests run as root)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )

    def fill(self, leave: int = 0) -> None:
        """Write until the filesystem is full (or only ``leave`` bytes are left)."""
        with open(self.path / "filler", "wb") as handle:
            try:
                while os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize > leave:
                    handle.write(b"\0" * 4096)
                    handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def read_only(self) -> None:
        subprocess.run(
            ["mount", "-o", "remount,ro", str(self.path)], check=True, capture_output=True
        )

    def unmount(self) -> None:
        done = subprocess.run(["umount", str(self.path)], capture_output=True)
        if done.returncode != 0:  # busy: detach now, freed when the last user lets go
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Tmpfs]]:
    mounted: list[Tmpfs] = []

    def mount(size: str = "64k") -> Tmpfs:
        fs = Tmpfs(tmp_path / f"tmpfs{len(mounted)}", size)
        mounted.append(fs)
        return fs

    try:
        yield mount
    finally:
        for fs in mounted:
            fs.unmount()


async def test_filesystem_healthy(probe_harness: Probes, tmp_path: Path) -> None:
    run = await probe_harness(
        {"type": "filesystem", "path": str(tmp_path), "free_bytes_degraded": None}
    ).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert free_bytes(run.result) > 0
    assert re.fullmatch(
        rf"{re.escape(str(tmp_path))} \(primary\), [\d.]+ \w+ free", run.result.detail or ""
    )
    assert not list(tmp_path.glob(f"{CANARY_PREFIX}*"))  # the canary was removed


async def test_filesystem_missing_directory(probe_harness: Probes, tmp_path: Path) -> None:
    missing = tmp_path / "articles"
    run = await probe_harness({"type": "filesystem", "path": str(missing)}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{missing} does not exist or is not a directory"

    run = await probe_harness(
        {
            "type": "filesystem",
            "path": str(missing),
            "create_missing": True,
            "free_bytes_degraded": None,
        }
    ).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert missing.is_dir()


async def test_filesystem_full(probe_harness: Probes, tmpfs: Callable[[str], Tmpfs]) -> None:
    fs = tmpfs("64k")
    fs.fill()
    run = await probe_harness(
        {
            "type": "filesystem",
            "path": str(fs.path),
            "free_bytes_degraded": None,
            "free_bytes_unhealthy": None,
        }
    ).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{fs.path}: cannot write: No space left on device (ENOSPC)"


async def test_filesystem_free_space_thresholds(
    probe_harness: Probes, tmpfs: Callable[[str], Tmpfs]
) -> None:
    fs = tmpfs("64k")
    probe = {
        "type": "filesystem",
        "path": str(fs.path),
        "free_bytes_degraded": "1MiB",
        "free_bytes_unhealthy": "24KiB",
    }
    run = await probe_harness(probe).run()
    assert run.result.status is Status.DEGRADED
    assert run.result.error == f"{fs.path}: only 64.0 KiB free (degraded below 1.0 MiB)"
    assert free_bytes(run.result) == 64 * 1024

    fs.fill(leave=16 * 1024)
    run = await probe_harness(probe).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{fs.path}: only 16.0 KiB free (unhealthy below 24.0 KiB)"
    assert free_bytes(run.result) == 16 * 1024


async def test_filesystem_read_only(probe_harness: Probes, tmpfs: Callable[[str], Tmpfs]) -> None:
    fs = tmpfs("64k")
    fs.read_only()
    probe = {
        "type": "filesystem",
        "path": str(fs.path),
        "free_bytes_unhealthy": None,
        "free_bytes_degraded": None,
    }
    run = await probe_harness(probe).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{fs.path}: cannot write: Read-only file system (EROFS)"

    # Creating a missing directory on it fails the same way (a finding, not a crash).
    sub = fs.path / "articles"
    run = await probe_harness({**probe, "path": str(sub), "create_missing": True}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{sub}: cannot create: Read-only file system (EROFS)"


async def test_filesystem_blocked_write_ends_at_the_timeout(
    probe_harness: Probes, tmp_path: Path
) -> None:
    """A write that blocks in the kernel (a hung NFS server looks the same).

    A FIFO where the canary file goes makes open() block until someone reads it;
    the probe's thread cannot be cancelled, the scheduler's timeout must still
    end the run. Opening the FIFO for reading afterwards lets the thread finish.
    """
    harness = probe_harness({"type": "filesystem", "path": str(tmp_path), "timeout": 0.5})
    (probe,) = harness.monitor.scheduler.probes[harness.component]
    fifo = tmp_path / probe.canary_name  # type: ignore[attr-defined]
    os.mkfifo(fifo)
    try:
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 0.5 + SLACK
        assert run.result.error == "no answer within 0.5s (timed out)"
        # The thread is still stuck: the next run says so at once instead of
        # blocking one more of the threads the other probes share.
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 0.2
        assert run.result.error == (
            f"{tmp_path}: the previous check is still blocked (a hung mount?)"
        )
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))


async def test_filesystem_fails_over_to_the_secondary_directory(
    probe_harness: Probes, tmpfs: Callable[[str], Tmpfs], tmp_path: Path
) -> None:
    primary = tmpfs("64k")
    primary.read_only()
    secondary = tmp_path / "secondary"
    secondary.mkdir()
    harness = probe_harness(
        {
            "type": "filesystem",
            "path": str(primary.path),
            "secondary_path": str(secondary),
            "free_bytes_degraded": None,
            "free_bytes_unhealthy": None,
        }
    )
    assert (await harness.run()).result.status is Status.UNHEALTHY
    harness.monitor.scheduler.switch_target("dep", "secondary")
    run = await harness.run()
    assert run.result.status is Status.HEALTHY, run.result
    assert (run.result.detail or "").startswith(f"{secondary} (secondary), ")
    assert harness.monitor.state.components["dep"].active_target == "secondary"
    registry = harness.monitor.registry
    sample = registry.get_sample_value(
        "pipeline_storage_active_target", {"component": "dep", "target": "secondary"}
    )
    assert sample == 1


async def test_switch_target_needs_a_secondary(probe_harness: Probes, tmp_path: Path) -> None:
    harness = probe_harness({"type": "filesystem", "path": str(tmp_path)})
    assert harness.monitor.state.components["dep"].targets == ()
    with pytest.raises(ValueError, match="no storage probe with a secondary target"):
        harness.monitor.scheduler.switch_target("dep", "secondary")
