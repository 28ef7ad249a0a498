"""tcp, dns and http probes against real listeners, real names and a stand-in
validation service, run through the ProbeScheduler as production runs them."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faults import HangingListener
from helpers import Harness, StandinService, address, assert_no_secret, console_script, free_port

from exporter.model import Status

pytestmark = pytest.mark.integration

# What a hung dependency may cost beyond its probe's timeout (scheduling, a
# busy CI runner).
SLACK = 0.5
TIMED_OUT = re.compile(r"timed out|no answer|timeout", re.IGNORECASE)

Probes = Callable[..., Harness]


# -- tcp -------------------------------------------------------------------------------


async def test_tcp_reachable(probe_harness: Probes, pg_dsn: str) -> None:
    run = await probe_harness({"type": "tcp", "targets": [address(pg_dsn)]}).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert run.result.detail == "1 of 1 reachable"
    assert run.component.up


async def test_tcp_refused(probe_harness: Probes, unused_port: int) -> None:
    run = await probe_harness({"type": "tcp", "targets": [f"127.0.0.1:{unused_port}"]}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"unreachable: 127.0.0.1:{unused_port}: Connection refused"
    assert not run.component.up


async def test_tcp_some_targets_down_is_degraded(
    probe_harness: Probes, pg_dsn: str, unused_port: int
) -> None:
    harness = probe_harness(
        {"type": "tcp", "targets": [address(pg_dsn), f"127.0.0.1:{unused_port}"]}
    )
    run = await harness.run()
    assert run.result.status is Status.DEGRADED
    assert f"127.0.0.1:{unused_port}" in (run.result.error or "")
    assert address(pg_dsn) not in (run.result.error or "")


async def test_tcp_dropped_syns_end_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener(full_backlog=True) as listener:
        run = await probe_harness(
            {"type": "tcp", "targets": [listener.address], "timeout": 0.5}
        ).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert TIMED_OUT.search(run.result.error or ""), run.result.error


def test_tcp_target_must_be_host_port() -> None:
    from pydantic import ValidationError

    from exporter.probes.tcp import TcpConfig

    with pytest.raises(ValidationError, match="is not host:port"):
        TcpConfig.model_validate({"type": "tcp", "targets": ["db.example:http"]})


# -- dns -------------------------------------------------------------------------------


async def test_dns_resolves_to_expected_address(probe_harness: Probes) -> None:
    run = await probe_harness(
        {"type": "dns", "hostname": "localhost", "expected_addresses": ["127.0.0.1", "::1"]}
    ).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert "127.0.0.1" in (run.result.detail or "")


async def test_dns_unexpected_address(probe_harness: Probes) -> None:
    run = await probe_harness(
        {"type": "dns", "hostname": "localhost", "expected_addresses": ["192.0.2.10"]}
    ).run()
    assert run.result.status is Status.UNHEALTHY
    assert "none of the expected 192.0.2.10" in (run.result.error or "")


async def test_dns_unknown_name(probe_harness: Probes) -> None:
    # .invalid never resolves (RFC 2606).
    run = await probe_harness(
        {"type": "dns", "hostname": "article-validation.invalid", "timeout": 3}
    ).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error and run.result.error.startswith(
        "cannot resolve article-validation.invalid:"
    ), run.result.error


@pytest.fixture
def silent_nameserver() -> Iterator[str]:
    """A UDP port 53 that takes DNS queries and never answers (root: port 53)."""
    for last in range(2, 250):
        address = f"127.53.0.{last}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((address, 53))
        except OSError:
            sock.close()
            continue
        try:
            yield address
        finally:
            sock.close()
        return
    pytest.fail("no free 127.53.0.x:53 for a silent name server (the tests run as root)")


async def test_dns_hung_resolver_ends_at_the_timeout(
    tmp_path: Path, silent_nameserver: str
) -> None:
    """The resolver's server never answers: the probe ends at its timeout.

    Only this process's view of /etc/resolv.conf changes: the monitor runs in its
    own mount namespace (unshare -m) where a bind mount points the resolver at
    the silent server; the namespace and the mount die with the process.
    """
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to give the probe its own resolv.conf"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {silent_nameserver}\noptions timeout:1 attempts:1\n")
    config = tmp_path / "dns.yml"
    config.write_text(
        json.dumps(
            {
                "check_interval": 5,
                "state_dir": str(tmp_path / "state"),
                "components": {
                    "network": {
                        "probes": [
                            {"type": "dns", "hostname": "validation.pipeline.test", "timeout": 0.5}
                        ]
                    }
                },
            }
        )
    )
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" probe --json --config "$3"'
    process = await asyncio.create_subprocess_exec(
        unshare,
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
        str(resolv),
        console_script(),
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1, err.decode()
    probe = json.loads(out)["components"]["network"]["probes"]["dns"]
    assert probe["status"] == "unhealthy"
    assert probe["error"] == "no answer within 0.5s (timed out)"
    assert probe["latency_ms"] == 500.0


# -- http ------------------------------------------------------------------------------


async def test_http_healthy(probe_harness: Probes, standin_service: StandinService) -> None:
    run = await probe_harness({"type": "http", "url": standin_service.url}).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert run.result.detail == "HTTP 200"
    assert standin_service.hits == 1


async def test_http_server_error(probe_harness: Probes, standin_service: StandinService) -> None:
    standin_service.error(500)
    run = await probe_harness({"type": "http", "url": standin_service.url}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{standin_service.url} answered HTTP 500"


async def test_http_expected_status(probe_harness: Probes, standin_service: StandinService) -> None:
    standin_service.error(503)
    harness = probe_harness(
        {"type": "http", "url": standin_service.url, "expected_status": [200, 503]}
    )
    assert (await harness.run()).result.status is Status.HEALTHY


async def test_http_refused(probe_harness: Probes, unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}/health"
    run = await probe_harness({"type": "http", "url": url}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{url}: cannot connect: Connection refused"


async def test_http_slow_answer_is_degraded(
    probe_harness: Probes, standin_service: StandinService
) -> None:
    standin_service.slow(0.4)
    run = await probe_harness(
        {"type": "http", "url": standin_service.url, "timeout": 2, "latency_degraded": 0.2}
    ).run()
    assert run.result.status is Status.DEGRADED
    assert run.result.error and run.result.error.startswith("slow: answered in 0.4")
    assert "over the 0.2s threshold" in run.result.error
    assert run.component.up  # degraded still counts as up


async def test_http_hung_service_ends_at_the_timeout(
    probe_harness: Probes, standin_service: StandinService
) -> None:
    standin_service.hang()
    run = await probe_harness({"type": "http", "url": standin_service.url, "timeout": 0.5}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert TIMED_OUT.search(run.result.error or ""), run.result.error


async def test_http_silent_listener_ends_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener() as listener:
        url = f"http://{listener.address}/health"
        run = await probe_harness({"type": "http", "url": url, "timeout": 0.5}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert TIMED_OUT.search(run.result.error or ""), run.result.error


async def test_http_json_body(probe_harness: Probes, standin_service: StandinService) -> None:
    probe = {
        "type": "http",
        "url": standin_service.url,
        "json_match": {"status": "ok", "checks.db": True, "checks.workers.0": "up"},
    }
    harness = probe_harness(probe)
    standin_service.json({"status": "ok", "checks": {"db": True, "workers": ["up"]}})
    assert (await harness.run()).result.status is Status.HEALTHY

    standin_service.json({"status": "ok", "checks": {"db": False, "workers": ["up"]}})
    run = await harness.run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{standin_service.url}: JSON checks.db is False, expected True"

    standin_service.json({"status": "ok"})
    run = await harness.run()
    assert run.result.error == f"{standin_service.url}: JSON body has no 'checks.db'"

    standin_service.ok()  # "ok" is not JSON
    run = await harness.run()
    assert run.result.error == f"{standin_service.url}: body is not JSON"


async def test_http_body_contains(probe_harness: Probes, standin_service: StandinService) -> None:
    harness = probe_harness({"type": "http", "url": standin_service.url, "body_contains": "ok"})
    assert (await harness.run()).result.status is Status.HEALTHY
    standin_service.error(200)  # 200, but the body says "internal error"
    run = await harness.run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{standin_service.url}: body does not contain 'ok'"


async def test_http_password_and_token_never_in_the_error(
    probe_harness: Probes, unused_port: int, standin_service: StandinService
) -> None:
    password, token = "s3cr3t-pw", "tok-0123456789"
    run = await probe_harness(
        {"type": "http", "url": f"http://probe:{password}@127.0.0.1:{unused_port}/health"}
    ).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == (
        f"http://probe:***@127.0.0.1:{unused_port}/health: cannot connect: Connection refused"
    )
    assert_no_secret(run.component.error, password)

    standin_service.error(401)
    run = await probe_harness(
        {
            "type": "http",
            "url": standin_service.url,
            "headers": {"Authorization": f"Bearer {token}"},
            "body_contains": token,  # so that the error text quotes it
        }
    ).run()
    assert run.result.error == f"{standin_service.url} answered HTTP 401"
    standin_service.ok()
    run = await probe_harness(
        {
            "type": "http",
            "url": standin_service.url,
            "headers": {"X-Api-Key": token},
            "body_contains": token,
        }
    ).run()
    assert run.result.error == f"{standin_service.url}: body does not contain '***'"
    assert_no_secret(run.component.error, token)


def test_http_credentials_twice_is_a_config_error() -> None:
    from pydantic import ValidationError

    from exporter.probes.http import HttpConfig

    with pytest.raises(ValidationError, match="not both"):
        HttpConfig.model_validate(
            {
                "type": "http",
                "url": "http://probe:pw@127.0.0.1:8080/health",
                "headers": {"authorization": "Bearer x"},
            }
        )


def test_free_port_is_refused() -> None:
    # The refused-connection tests rely on this.
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_python_is_the_venv() -> None:
    assert Path(console_script()).parent == Path(sys.executable).parent
