"""The bearer token of the mutating endpoints.

From ``PIPELINE_API_TOKEN``, ``PIPELINE_API_TOKEN_FILE`` or the config; with
none of them, one is generated into the state directory (mode 0600) and reused
on later starts. Its path is logged, never the token.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from exporter.config import ConfigError, env_secret
from exporter.private_files import open_private, private_directory
from recovery_webhook.config import AppConfig

log = logging.getLogger(__name__)

TOKEN_FILE_NAME = "api-token"
MIN_TOKEN_LENGTH = 16


def resolve_token(config: AppConfig, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    token = env_secret(env, "PIPELINE_API_TOKEN")
    source = "PIPELINE_API_TOKEN"
    if token is None and config.api.token is not None:
        token, source = config.api.token.get_secret_value(), "api.token"
    if token is not None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{source}: the API token must be at least {MIN_TOKEN_LENGTH} characters long"
            )
        return token
    return _generated_token(config.state_dir / TOKEN_FILE_NAME)


def _generated_token(path: Path) -> str:
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if len(existing) >= MIN_TOKEN_LENGTH:
        log.info("API token: using the one in %s", path)
        return existing
    private_directory(path.parent)
    token = secrets.token_urlsafe(32)
    # Created with 0600 from the start: never readable by others, even briefly.
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    log.warning(
        "no API token configured: generated one into %s (give it to Alertmanager's"
        " credentials_file and to people who may trigger repairs)",
        path,
    )
    return token


def check_bearer(header: str | None, token: str) -> int | None:
    """None when authorised, else the HTTP status to answer (401 or 403)."""
    if not header:
        return 401
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return 401
    try:
        given = value.strip().encode("utf-8")
    except UnicodeEncodeError:
        # Bytes that are not UTF-8 (aiohttp hands them over as lone surrogates):
        # no token of ours looks like that; a malformed credential, not a wrong one.
        return 401
    if not hmac.compare_digest(given, token.encode("utf-8")):
        return 403
    return None
