"""The monitor's configuration: YAML validated into frozen models.

A config names components; each has one or more probes chosen by ``type:``.
With no file, :func:`default_config_data` watches the five parts of a pipeline on
this host. The seed's environment variables override the file.
"""

from __future__ import annotations

import functools
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from exporter.probes import probe_config_union
from exporter.probes.base import ProbeConfig, StrictModel, checked_url, read_secret_file
from exporter.redact import looks_secret, mask_url_secrets
from exporter.units import Bytes, Seconds, parse_duration

ENV_CONFIG = "PIPELINE_CONFIG"
ENV_STATE_DIR = "PIPELINE_STATE_DIR"

if TYPE_CHECKING:
    ProbeConfigs = ProbeConfig
else:
    ProbeConfigs = Annotated[probe_config_union(), Field(discriminator="type")]

DEFAULT_PROBE_TIMEOUT = 5.0

COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

# The seed's "Manual Steps if Failed" column, shown when a repair is handed to people.
DEFAULT_MANUAL_STEPS: dict[str, list[str]] = {
    "network": ["Check the firewall", "Check DNS resolution", "Check internet connectivity"],
    "validation_service": [
        "SSH to the validation server",
        "Check the service's logs",
        "Restart the service manually",
    ],
    "database": [
        "Verify the database server is up",
        "Check the credentials",
        "Restart the connection pool",
    ],
    "storage": [
        "Check the storage service",
        "Verify the credentials",
        "Check the disk space",
    ],
    "queue": [
        "Check the broker's status",
        "Move stuck messages aside (never purge articles)",
        "Restart the broker",
    ],
}

# Editors' words for the seed's components; configurable per component.
DEFAULT_DISPLAY_NAMES = {
    "network": "Network",
    "validation_service": "Article checks",
    "database": "Article database",
    "storage": "Image and file storage",
    "queue": "Publishing queue",
}


class ConfigError(Exception):
    """A config that cannot run: says the file (or variable), the field and the value."""


class ComponentConfig(StrictModel):
    display_name: str | None = None
    description: str | None = None
    probes: list[ProbeConfigs] = Field(min_length=1)
    aggregate: Literal["worst", "best"] = "worst"
    blocks_publishing: bool = True
    manual_steps: list[str] = Field(default_factory=list)

    @field_validator("probes")
    @classmethod
    def _unique_probe_names(cls, probes: list[Any]) -> list[Any]:
        names = [p.probe_name for p in probes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"probe names must be unique within a component; repeated: {duplicates}"
                " (give each probe a distinct `name:`)"
            )
        return probes


class AuditConfig(StrictModel):
    file: Path | None = None
    format: Literal["text", "json"] = "text"
    max_bytes: Bytes = 10 * 2**20
    backup_count: int = Field(default=5, ge=0)
    health_check_every: int = Field(
        default=1,
        ge=1,
        description="1: a HEALTH_CHECK line for every check (the seed's behaviour); N: only"
        " when a component's status changes, and otherwise for one check in N",
    )


class AlertWebhookConfig(StrictModel):
    """Where each component transition is POSTed (ALERT_WEBHOOK_URL)."""

    url: str | None = None
    timeout: Seconds = 5.0
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        example = "an http:// or https:// URL with a host"
        if url is not None and not checked_url(url, ("http", "https"), example).hostname:
            raise ValueError(f"expected {example}")
        return url


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pipeline-recovery"


class MonitorConfig(StrictModel):
    check_interval: Seconds = 30.0
    state_dir: Path = Field(default_factory=_default_state_dir)
    components: dict[str, ComponentConfig] = Field(min_length=1)
    audit: AuditConfig = AuditConfig()
    alert_webhook: AlertWebhookConfig = AlertWebhookConfig()

    @field_validator("components")
    @classmethod
    def _component_names(cls, components: dict[str, ComponentConfig]) -> dict[str, Any]:
        for name in components:
            if not COMPONENT_NAME.match(name):
                raise ValueError(
                    f"component name {name!r} must be lower-case letters, digits and _,"
                    " starting with a letter"
                )
        return components

    @model_validator(mode="before")
    @classmethod
    def _default_timeouts(cls, data: Any) -> Any:
        """A probe without ``timeout`` gets 5s, or 80% of a shorter check interval."""
        if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
            return data
        try:
            interval = float(parse_duration(data.get("check_interval", 30.0)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return data  # the field's own validation reports it
        default = min(DEFAULT_PROBE_TIMEOUT, 0.8 * interval)
        components = {}
        for name, component in data["components"].items():
            if isinstance(component, dict) and isinstance(component.get("probes"), list):
                probes = [
                    {"timeout": default, **probe} if isinstance(probe, dict) else probe
                    for probe in component["probes"]
                ]
                component = {**component, "probes": probes}
            components[name] = component
        return {**data, "components": components}

    @model_validator(mode="after")
    def _timeouts_fit_interval(self) -> MonitorConfig:
        for cname, component in self.components.items():
            for index, probe in enumerate(component.probes):
                if probe.timeout >= self.check_interval:
                    raise ValueError(
                        f"components.{cname}.probes.{index}.timeout: {probe.timeout:g}s must be"
                        f" shorter than check_interval ({self.check_interval:g}s)"
                    )
        return self

    @classmethod
    def environment_overrides(cls, data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """A subclass's own environment variables, applied after the seed's."""
        return data

    def display_name(self, component: str) -> str:
        configured = self.components[component].display_name
        return configured or DEFAULT_DISPLAY_NAMES.get(component) or component.replace("_", " ")

    def manual_steps(self, component: str) -> list[str]:
        return self.components[component].manual_steps or DEFAULT_MANUAL_STEPS.get(component, [])


def default_config_data(state_dir: Path) -> dict[str, Any]:
    """The five components of the seed, on this host."""
    return {
        "components": {
            "network": {
                "probes": [
                    {
                        "type": "tcp",
                        "name": "reachability",
                        "targets": ["127.0.0.1:5432", "127.0.0.1:5672"],
                    }
                ]
            },
            "validation_service": {
                "probes": [{"type": "http", "url": "http://127.0.0.1:8080/health"}]
            },
            "database": {
                "probes": [
                    {"type": "postgres", "dsn": "postgresql://postgres@127.0.0.1:5432/postgres"}
                ]
            },
            "storage": {
                "probes": [
                    {
                        "type": "filesystem",
                        "path": str(state_dir / "storage"),
                        "create_missing": True,
                    }
                ]
            },
            "queue": {
                "probes": [{"type": "rabbitmq", "url": "amqp://guest:guest@127.0.0.1:5672/%2F"}]
            },
        }
    }


ModelT = TypeVar("ModelT", bound=MonitorConfig)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(
    model: type[ModelT],
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelT:
    """Read, override from the environment, validate. Raises ConfigError."""
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    source = str(path) if path is not None else "built-in default config"
    data = read_yaml(Path(path)) if path is not None else {}
    if "components" not in data:
        state_dir = env.get(ENV_STATE_DIR) or data.get("state_dir") or _default_state_dir()
        data = {**default_config_data(Path(state_dir)), **data}
    data = model.environment_overrides(apply_environment(data, env), env)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, model)) from None


def env_secret(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` or the content of the file named by ``NAME_FILE``."""
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return read_secret_file(file_name)
        except ValueError as exc:
            raise ConfigError(f"environment variable {name}_FILE: {exc}") from None
    return env.get(name) or None


def apply_environment(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The seed's variables win over the file."""
    data = dict(data)
    interval = env.get("PIPELINE_CHECK_INTERVAL")
    if interval:
        try:
            seconds = float(interval)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise ConfigError(
                f"environment variable PIPELINE_CHECK_INTERVAL: expected seconds > 0,"
                f" got {interval!r}"
            )
        data["check_interval"] = seconds
    if env.get(ENV_STATE_DIR):
        data["state_dir"] = env[ENV_STATE_DIR]
    if env.get("AUDIT_LOG_FILE"):
        data["audit"] = {**(data.get("audit") or {}), "file": env["AUDIT_LOG_FILE"]}
    webhook = env_secret(env, "ALERT_WEBHOOK_URL")
    if webhook:
        data["alert_webhook"] = {**(data.get("alert_webhook") or {}), "url": webhook}
    database_url = env_secret(env, "DATABASE_URL")
    if database_url:
        data["components"] = _with_database_url(data.get("components") or {}, database_url)
    return data


def _with_database_url(components: dict[str, Any], url: str) -> dict[str, Any]:
    scheme = urlsplit(url).scheme.split("+")[0]
    kinds = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
    if scheme not in kinds:
        raise ConfigError(
            "environment variable DATABASE_URL: expected a postgresql:// or mysql:// URL,"
            f" got scheme {scheme!r}"
        )
    components = dict(components)
    database = dict(components.get("database") or {})
    probes = [dict(p) for p in database.get("probes") or []]
    sql = [p for p in probes if p.get("type") in ("postgres", "mysql")]
    if len(sql) > 1:
        raise ConfigError(
            "environment variable DATABASE_URL: the database component has several SQL"
            " probes; set each one's dsn in the config file instead"
        )
    if sql:
        sql[0]["type"] = kinds[scheme]
        sql[0]["dsn"] = url
        sql[0].pop("dsn_file", None)
    else:
        probes.append({"type": kinds[scheme], "dsn": url})
    database["probes"] = probes
    components["database"] = database
    return components


@functools.cache
def _kind_tags(model: type[BaseModel]) -> frozenset[str]:
    """The ``type:`` values of every probe/action kind reachable from ``model``.

    Pydantic puts the kind into an error's location ("probes.0.tcp.timeout");
    knowing the kinds lets the message drop it.
    """
    found: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> None:
        for arg in typing.get_args(annotation):
            visit(arg)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.add(annotation)
            kind = annotation.model_fields.get("type")
            if kind is not None:
                found.update(a for a in typing.get_args(kind.annotation) if isinstance(a, str))
            for field in annotation.model_fields.values():
                visit(field.annotation)

    visit(model)
    return frozenset(found)


# Where a value may hold a secret whatever the key is called: a header or an
# environment variable of a command, a request body; and any *url (a password,
# a token parameter, or a webhook URL that is itself the secret).
_SECRET_BEARING = frozenset({"headers", "env", "json_body"})


def _maybe_secret(error: Any) -> bool:
    """Whether an error's input must not be shown: it is, or may be, a secret.

    By its place (a key that looks secret, or one of _SECRET_BEARING), by its
    kind (an unknown key may be a misspelled secret one: ``dns:`` for ``dsn:``),
    or by its look (a URL with a password or a secret query parameter)."""
    value = error.get("input")
    if isinstance(value, dict | list) or error["type"] == "extra_forbidden":
        return True
    for part in map(str, error["loc"]):
        if part in _SECRET_BEARING or part.lower().endswith("url") or looks_secret(part):
            return True
    return isinstance(value, str) and mask_url_secrets(value) != value


def format_validation_error(
    source: str, exc: ValidationError, model: type[BaseModel] | None = None
) -> str:
    tags = _kind_tags(model) if model is not None else frozenset()
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors(include_url=False):
        parts = list(error["loc"])
        # Drop the union tag pydantic inserts after a list index ("probes.0.tcp.timeout").
        parts = [
            part
            for i, part in enumerate(parts)
            if not (i > 0 and isinstance(parts[i - 1], int) and part in tags)
        ]
        loc = ".".join(str(part) for part in parts)
        # Our own validators may quote what they refuse: mask what looks secret in it.
        message = mask_url_secrets(error["msg"].removeprefix("Value error, "))
        if not loc:
            lines.append(f"  {message}")
            continue
        value = error.get("input")
        shown = "" if _maybe_secret(error) else f" (got {value!r})"
        lines.append(f"  {loc}: {message}{shown}")
    return "\n".join(lines)
