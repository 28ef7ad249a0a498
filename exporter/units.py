"""Durations ("30s", "5m") and sizes ("500MiB") as config values."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_duration(value: object) -> object:
    """Seconds from a number or a string such as ``"1.5s"``, ``"250ms"``, ``"5m"``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 30, '30s', '250ms', '5m' or '1h'")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return value


def parse_size(value: object) -> object:
    """Bytes from a number or a string such as ``"500MiB"`` or ``"2GB"``."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError("expected a size such as 1048576, '500MiB' or '2GB'")
        unit = (match.group(2) or "B").lower()
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Bytes = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
