"""The service's configuration: the monitor's, plus server, API, recovery,
history and status page sections."""

from __future__ import annotations

import socket
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from exporter.config import MonitorConfig, env_secret
from exporter.probes.base import SecretsFromFiles, StrictModel
from exporter.units import Bytes, Seconds
from recovery_webhook.actions import action_config_union, default_rules
from recovery_webhook.actions.base import ActionConfig
from recovery_webhook.store import is_postgres_url

if TYPE_CHECKING:
    ActionConfigs = ActionConfig
else:
    ActionConfigs = Annotated[action_config_union(), Field(discriminator="type")]


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: Bytes = 1 << 20
    max_connections: int = Field(
        default=512,
        ge=1,
        description="client connections open at once; fewer when the open-file limit"
        " leaves less room beside what probes and repairs keep",
    )
    keepalive_timeout: Seconds = Field(
        default=15.0, description="an idle connection is closed after this long"
    )
    header_timeout: Seconds = Field(
        default=10.0, description="a request's line and headers must arrive within this"
    )
    body_timeout: Seconds = Field(
        default=30.0, description="a request's body must arrive within this"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to read the read-only endpoints ('*' for any)",
    )


class ApiConfig(SecretsFromFiles):
    token: SecretStr | None = Field(
        default=None,
        description="bearer token of the mutating endpoints; generated into the state"
        " directory when neither this nor PIPELINE_API_TOKEN(_FILE) is set",
    )


class RecoveryRule(StrictModel):
    alertname: str | list[str] = Field(description="alert name(s); '*' matches any")
    component: str | None = Field(default=None, description="component; omitted matches any")
    matchers: dict[str, str] = Field(
        default_factory=dict, description="further labels the alert must carry"
    )
    actions: list[ActionConfigs] = Field(
        default_factory=list,
        description="tried in order until the component is healthy; empty: escalate at once",
    )

    def matches(self, alertname: str, component: str, labels: dict[str, str]) -> bool:
        names = [self.alertname] if isinstance(self.alertname, str) else self.alertname
        if "*" not in names and alertname not in names:
            return False
        if self.component is not None and self.component != component:
            return False
        return all(labels.get(k) == v for k, v in self.matchers.items())


class RecoveryConfig(StrictModel):
    enabled: bool = True
    dry_run: bool = False
    max_attempts: int = Field(default=3, ge=1, description="failed repairs before escalating")
    window: Seconds = Field(default=3600.0, description="where failed repairs are counted")
    retry_delay: Seconds = Field(
        default=60.0, description="pause before retrying a failed repair of a firing alert"
    )
    action_timeout: Seconds = Field(default=60.0, description="default per-action timeout")
    verify_timeout: Seconds = Field(
        default=30.0, description="how long an action's effect is re-probed for"
    )
    verify_interval: Seconds = 2.0
    lease_ttl: Seconds = Field(
        default=10.0,
        ge=1.0,
        description="how long a monitor's hold on a repair lasts unrenewed: after its"
        " monitor dies, another takes the repair over this long after the last renewal",
    )
    rules: list[RecoveryRule] = Field(default_factory=default_rules, validate_default=True)


class HistoryConfig(SecretsFromFiles):
    url: SecretStr | None = Field(
        default=None,
        description="postgresql://user@host/db: a store shared by several monitors"
        " (PIPELINE_HISTORY_URL); unset, the SQLite file at `path`",
    )
    path: Path | None = Field(
        default=None, description="SQLite file; default: history.sqlite3 in the state directory"
    )
    retention: Seconds = Field(default=90 * 86400.0, description="how long events are kept")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not is_postgres_url(url.get_secret_value()):
            raise ValueError("must be a postgresql:// URL (or unset, for the SQLite file)")
        return url


class StatusPageConfig(StrictModel):
    title: str = "Publishing pipeline status"
    refresh_seconds: int = Field(default=5, ge=1, le=300)
    newsroom_contact: str | None = Field(
        default=None, description="who editors call when publishing is down"
    )
    timezone: str = Field(default="UTC", description="for times in editors' messages")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (use an IANA name such as 'Europe/London')"
            ) from None
        return name


def _ratio(value: object) -> object:
    """A ratio from ``0.995`` or ``"99.5%"``; 99.5 alone is refused, not guessed."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            # Rounded: 99.9 / 100 is 0.9990000000000001 in binary floating point.
            return round(float(value.strip()[:-1]) / 100, 12)
        except ValueError:
            raise ValueError(
                "expected a ratio such as 0.995 or a percentage such as '99.5%'"
            ) from None
    if isinstance(value, int | float) and 1 <= value <= 100:
        raise ValueError(f"a ratio is below 1: write {value / 100:g} or '{value:g}%'")
    return value


class SloConfig(StrictModel):
    """The publishing objective: the share of time articles can be published.

    The monitor exports the objective (pipeline_slo_objective_ratio), and the
    recording and burn-rate rules of alert_rules.yml derive every threshold from
    that series, so this is the one place to change it. The rules count the
    error budget over 30 days, the window the SRE workbook's burn rates are
    computed for; ``window`` sets the one the monitor reports.
    """

    objective: Annotated[float, BeforeValidator(_ratio)] = Field(
        default=0.995,
        gt=0,
        lt=1,
        description="share of the window when articles can be published (0.995 or '99.5%')",
    )
    window: Seconds = Field(default=30 * 86400.0, description="where the error budget is counted")


class AppConfig(MonitorConfig):
    instance: str | None = Field(
        default=None,
        max_length=100,
        description="this monitor's name in its group (PIPELINE_INSTANCE); default host:port",
    )
    server: ServerConfig = ServerConfig()
    api: ApiConfig = ApiConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    history: HistoryConfig = HistoryConfig()
    status_page: StatusPageConfig = StatusPageConfig()
    slo: SloConfig = SloConfig()

    @model_validator(mode="after")
    def _slo_window_is_kept(self) -> AppConfig:
        if self.slo.window > self.history.retention:
            raise ValueError(
                f"slo.window: {self.slo.window / 86400:g} days is longer than"
                f" history.retention ({self.history.retention / 86400:g} days): the error"
                " budget is counted from the history of the whole window"
            )
        return self

    @model_validator(mode="after")
    def _rules_name_components(self) -> AppConfig:
        if "rules" not in self.recovery.model_fields_set:
            # The built-in rules cover the seed's five components; keep those present.
            rules = [r for r in self.recovery.rules if r.component in self.components]
            object.__setattr__(self, "recovery", self.recovery.model_copy(update={"rules": rules}))
        for index, rule in enumerate(self.recovery.rules):
            if rule.component is not None and rule.component not in self.components:
                known = ", ".join(self.components)
                raise ValueError(
                    f"recovery.rules.{index}.component: {rule.component!r} is not a configured"
                    f" component ({known})"
                )
        return self

    @classmethod
    def environment_overrides(cls, data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        url = env_secret(env, "PIPELINE_HISTORY_URL")
        if url:
            history = {k: v for k, v in (data.get("history") or {}).items() if k != "url_file"}
            data = {**data, "history": {**history, "url": url}}
        if env.get("PIPELINE_INSTANCE"):
            data = {**data, "instance": env["PIPELINE_INSTANCE"]}
        return data

    def instance_name(self) -> str:
        """This monitor's name in its group."""
        return self.instance or f"{socket.gethostname()}:{self.server.port}"

    @property
    def history_url(self) -> str | None:
        return self.history.url.get_secret_value() if self.history.url else None

    @property
    def history_path(self) -> Path:
        return self.history.path or self.state_dir / "history.sqlite3"
