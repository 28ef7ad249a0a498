"""``docs/api.md``, written from the OpenAPI document.

    python -m recovery_webhook.apidoc docs/api.md

A test checks that the file is what this writes, so the page cannot drift from
the document, which cannot drift from the models.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recovery_webhook.openapi import spec

REF = "#/components/schemas/"


def render(document: Mapping[str, Any]) -> str:
    lines = [
        "# HTTP API",
        "",
        "<!-- Written by `python -m recovery_webhook.apidoc docs/api.md` from",
        "     GET /api/openapi.json; a test checks that it is current. -->",
        "",
        str(document["info"]["description"]),
        "Operations marked *token* need `Authorization: Bearer <token>`. A field",
        "marked *always* is in every answer (null when there is nothing to say).",
        "Fields may be added; none is removed or renamed.",
        "",
        "| operation | auth | what |",
        "|---|---|---|",
    ]
    operations = [
        (method.upper(), path, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    for method, path, op in operations:
        auth = "token" if op.get("security") else "-"
        lines.append(
            f"| [`{method} {path}`](#{_anchor(method + ' ' + path)}) | {auth} | {op['summary']} |"
        )
    for method, path, op in operations:
        lines += ["", f"## {method} {path}", "", op["summary"] + "."]
        if op.get("security"):
            lines += ["", "Needs the bearer token."]
        if op.get("parameters"):
            lines += ["", "| parameter | in | type | description |", "|---|---|---|---|"]
            for p in op["parameters"]:
                lines.append(
                    f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} | {p['description']} |"
                )
        if "requestBody" in op:
            (media, body), *_ = op["requestBody"]["content"].items()
            lines += ["", f"Request body ({media}): {_type(body['schema'])}."]
        lines += ["", "| status | body | meaning |", "|---|---|---|"]
        for status, answer in op["responses"].items():
            bodies = ", ".join(
                f"{_type(c['schema'])} ({media})" for media, c in answer.get("content", {}).items()
            )
            lines.append(f"| {status} | {bodies} | {answer['description']} |")
    lines += ["", "## Schemas"]
    for name, schema in document["components"]["schemas"].items():
        lines += ["", f"### {name}"]
        if schema.get("description"):
            lines += ["", _one_line(schema["description"])]
        if "properties" in schema:
            required = set(schema.get("required", ()))
            lines += ["", "| field | type | always | description |", "|---|---|---|---|"]
            for field, prop in schema["properties"].items():
                lines.append(
                    f"| `{field}` | {_type(prop)} | {'yes' if field in required else 'no'} |"
                    f" {_one_line(prop.get('description', ''))} |"
                )
            if schema.get("additionalProperties") is True:
                lines += ["", "Other fields may follow."]
        elif "enum" in schema:
            lines += ["", "One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + "."]
    return "\n".join(lines) + "\n"


def _type(schema: Mapping[str, Any]) -> str:
    """A schema in a few words: ``list of [Attempt](#attempt)``, ``integer 1-1000``."""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(REF)
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        words = f"list of {_type(schema.get('items', {}))}"
    elif kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, Mapping) and values:
            words = f"map of {_type(values)}"
        elif "properties" in schema:
            words = "object with " + ", ".join(f"`{k}`" for k in schema["properties"])
        else:
            words = "object"
    elif kind == "null":
        words = "null"
    elif kind is None:
        words = "any"
    else:
        words = str(kind)
        if schema.get("format"):
            words += f" ({schema['format']})"
    if "minimum" in schema or "maximum" in schema:
        words += f" {schema.get('minimum', '')}-{schema.get('maximum', '')}".rstrip("-")
    if "default" in schema:
        words += f", default {schema['default']}"
    return words


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, spaces to dashes, most
    punctuation dropped."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def main(argv: list[str]) -> int:
    text = render(spec())
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
