"""One-shot set-up of the Docker Compose stack, run before the monitor starts.

Runs in the monitor's image (it has boto3, pika and the config loader) and:

1. writes the monitor's API token into the shared secrets volume, where the
   monitor (``PIPELINE_API_TOKEN_FILE``) and Alertmanager (``credentials_file``)
   read it: ``$PIPELINE_API_TOKEN`` if given, else the one written on an earlier
   start, else a new random one. No token is ever kept in the repository;
2. writes ``$SLACK_WEBHOOK_URL``, if given, next to it for Alertmanager;
3. creates every S3 bucket (primary and secondary) and declares every RabbitMQ
   queue that the monitor's config probes, so that a fresh stack starts healthy.

Idempotent: run on every ``docker compose up``.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import boto3
import botocore.exceptions
import pika

from exporter.config import load_config
from exporter.probes.rabbitmq import RabbitmqConfig
from exporter.probes.s3 import S3Config, S3Target
from recovery_webhook.auth import MIN_TOKEN_LENGTH
from recovery_webhook.config import AppConfig

T = TypeVar("T")

SECRETS_DIR = Path(os.environ.get("SECRETS_DIR", "/run/pipeline-secrets"))
CONFIG = os.environ.get("PIPELINE_CONFIG", "/etc/pipeline-monitor/pipeline.yml")
DEADLINE_SECONDS = 120.0


def write_secret(name: str, value: str) -> None:
    """Readable by the containers that mount the secrets volume (the monitor runs
    as uid 10001, Alertmanager as nobody); nothing else mounts it."""
    path = SECRETS_DIR / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(value + "\n", encoding="utf-8")
    tmp.chmod(0o444)
    tmp.replace(path)


def api_token() -> None:
    given = os.environ.get("PIPELINE_API_TOKEN", "").strip()
    path = SECRETS_DIR / "api-token"
    if given:
        if len(given) < MIN_TOKEN_LENGTH:
            sys.exit(f"PIPELINE_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long")
        write_secret("api-token", given)
        print(f"API token: PIPELINE_API_TOKEN, written to {path}")
    elif path.exists() and len(path.read_text(encoding="utf-8").strip()) >= MIN_TOKEN_LENGTH:
        print(f"API token: keeping the one in {path}")
    else:
        write_secret("api-token", secrets.token_urlsafe(32))
        print(
            f"API token: generated into {path} (read it with: docker compose"
            f" -f deploy/docker-compose.yml exec monitor cat {path})"
        )


def slack_url() -> None:
    url = os.environ.get("SLACK_WEBHOOK_URL", "").strip()
    if url:
        write_secret("slack_webhook_url", url)
        print("Slack: webhook URL written for Alertmanager")
    elif not (SECRETS_DIR / "slack_webhook_url").exists():
        print("Slack: SLACK_WEBHOOK_URL not set; Alertmanager's Slack notifications will fail")


def retry(what: str, attempt: Callable[[], T]) -> T:
    """The services may still be starting: try until the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            return attempt()
        except Exception as exc:  # any failure of a starting service: try again
            if time.monotonic() > deadline:
                sys.exit(f"{what}: giving up: {type(exc).__name__}: {exc}")
            time.sleep(2)


def create_bucket(target: S3Target) -> None:
    key_id, secret = target.access_key_id, target.secret_access_key
    client = boto3.client(
        "s3",
        endpoint_url=target.endpoint_url,
        region_name=target.region,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )

    def attempt() -> None:
        try:
            client.head_bucket(Bucket=target.bucket)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            options = {}
            if target.region != "us-east-1":
                options["CreateBucketConfiguration"] = {"LocationConstraint": target.region}
            client.create_bucket(Bucket=target.bucket, **options)
            print(f"S3: created bucket {target.bucket}")
        else:
            print(f"S3: bucket {target.bucket} exists")

    retry(f"bucket {target.bucket}", attempt)


def declare_queues(probe: RabbitmqConfig) -> None:
    def attempt() -> None:
        params = pika.URLParameters(probe.url.get_secret_value())
        params.connection_attempts = 1
        params.socket_timeout = 5
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            for queue in probe.queues:
                # The same arguments as the sample worker's declaration.
                channel.queue_declare(queue=queue.name, durable=True)
                print(f"RabbitMQ: queue {queue.name} declared")
        finally:
            connection.close()

    retry("RabbitMQ", attempt)


def main() -> None:
    SECRETS_DIR.mkdir(parents=True, exist_ok=True)
    api_token()
    slack_url()
    config = load_config(AppConfig, CONFIG)
    for component in config.components.values():
        for probe in component.probes:
            if isinstance(probe, S3Config):
                create_bucket(probe)
                if probe.secondary is not None:
                    create_bucket(probe.secondary)
            elif isinstance(probe, RabbitmqConfig) and probe.queues:
                declare_queues(probe)
    print("stack ready")


if __name__ == "__main__":
    main()
