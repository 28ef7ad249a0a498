"""What every body model shares: its configuration and the timestamp type."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Attribute docstrings become the fields' descriptions in the OpenAPI document,
# so a field is described once, beside its type.
DOCUMENTED = ConfigDict(use_attribute_docstrings=True)

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""RFC 3339 in UTC as ``datetime.isoformat()`` writes it (``...+00:00``), kept as
the string the API has always sent rather than re-rendered by pydantic (``...Z``)."""


class Body(BaseModel):
    """A JSON body the service sends. Frozen: the seed's Python API hands these
    out, and a caller must not change what another reader sees.

    Fields have no defaults, so that the OpenAPI document lists every field as
    required: the service always sends all of them (null when there is nothing)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)
