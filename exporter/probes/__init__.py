"""Probe kinds, looked up by the config's ``type:``. One module per kind."""

from __future__ import annotations

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


__all__ = ["PROBE_KINDS", "Probe", "ProbeConfig", "ProbeContext", "build_probe"]
