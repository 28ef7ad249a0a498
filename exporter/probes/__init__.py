"""Probe kinds, looked up by the config's ``type:``. One module per kind."""

from __future__ import annotations

import logging
from functools import reduce
from operator import or_
from typing import Any

from exporter.probes import dns, filesystem, http, mysql, postgres, rabbitmq, redis, s3, tcp
from exporter.probes.base import BaseProbe, Probe, ProbeConfig, ProbeContext

PROBE_KINDS: dict[str, type[BaseProbe]] = {
    module.Probe.kind: module.Probe
    for module in (tcp, dns, http, postgres, mysql, s3, filesystem, rabbitmq, redis)
}


def probe_config_union() -> Any:
    """The union of every kind's config model, for a discriminated ``type`` field."""
    return reduce(or_, (kind.Config for kind in PROBE_KINDS.values()))


def build_probe(config: ProbeConfig, context: ProbeContext) -> Probe:
    return PROBE_KINDS[config.type](config, context)


# The loggers of the clients the probes use. A probe reports a failure itself, in
# one line per change of state; the clients narrate every attempt (pika: some
# twenty lines and three tracebacks per refused connection, "Probably
# incompatible Protocol Versions" among them), at ERROR too.
CLIENT_LOGGERS = (
    "pika",
    "psycopg",
    "pymysql",
    "redis",
    "push_response",  # redis-py's RESP3 parsers
    "boto3",
    "botocore",
    "s3transfer",
    "urllib3",
)


def hold_client_loggers() -> None:
    """Keep the clients' log lines below the probes' own: CRITICAL only.

    A logger whose level someone set is left alone, and so are all of them when
    the service log is at DEBUG (whoever debugs wants the clients' words too)."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)


__all__ = [
    "CLIENT_LOGGERS",
    "PROBE_KINDS",
    "Probe",
    "ProbeConfig",
    "ProbeContext",
    "build_probe",
    "hold_client_loggers",
]
