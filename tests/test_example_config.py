"""deploy/pipeline.example.yml is valid and shows every option the config takes."""

from __future__ import annotations

import re
import typing

import pytest
from helpers import REPO
from pydantic import BaseModel

from exporter.config import load_config
from recovery_webhook.config import AppConfig

pytestmark = pytest.mark.unit

EXAMPLE = REPO / "deploy" / "pipeline.example.yml"


def _models(annotation: typing.Any) -> typing.Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def option_names() -> set[tuple[str, str]]:
    """(model, field) for every field reachable from AppConfig."""
    found: set[tuple[str, str]] = set()
    todo, seen = [AppConfig], set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            found.add((model.__name__, name))
            todo.extend(_models(field.annotation))
    return found


def test_the_example_is_a_valid_config() -> None:
    config = load_config(AppConfig, EXAMPLE, environ={})
    assert set(config.components) == {
        "network",
        "validation_service",
        "database",
        "storage",
        "queue",
    }


def test_the_example_shows_every_option() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(
        f"{model}.{name}"
        for model, name in option_names()
        if not re.search(rf"(^|[\s{{,#]){re.escape(name)}(_file)?:", text, re.M)
    )
    assert not missing, f"options missing from {EXAMPLE.name}: {missing}"
