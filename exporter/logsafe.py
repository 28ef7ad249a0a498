"""Log lines that text from outside can neither forge nor hide.

Alert names, labels, error texts and request paths end up in the audit log and
the service log. A line break in one would start a forged line; an escape
sequence would rewrite what a terminal shows; a NUL makes grep call the file
binary. So every record is one line: each character that breaks a line
(``str.splitlines()`` knows ten of them), controls a terminal or is invisible
(Unicode categories Cc, Cf, Cs, Zl and Zp) is written as an escape.

Three renderings, each reversible so that a record's fields read back exactly:

- :func:`escape` for free text (the service log): backslash escapes, the
  backslash itself doubled;
- :func:`json_safe` for JSON text (the audit log's payloads and JSON lines):
  ``\\uXXXX`` escapes, still valid JSON;
- :func:`key_values` for the seed's ``key=value, key=value``: a value that
  holds a separator, a quote, a backslash or an escaped character is written as
  a JSON string, so ``error=x, severity=LOW`` can only ever be one field.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from exporter.redact import mask_url_secrets

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Runs of characters outside printable ASCII (and the backslash): only these
# need a look, and most text has none.
_NOT_PLAIN = re.compile(r"[^\x20-\x5b\x5d-\x7e]+")
_NOT_ASCII_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_dumps = json.JSONEncoder(ensure_ascii=False).encode


def unsafe(char: str) -> bool:
    """Whether ``char`` may break a line, steer a terminal or hide itself."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _code(char: str) -> str:
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def _escape_run(match: re.Match[str]) -> str:
    return "".join(
        _SHORT.get(char) or (_code(char) if unsafe(char) else char) for char in match.group(0)
    )


def escape(text: str) -> str:
    """``text`` on one line: unsafe characters as ``\\n``, ``\\x1b``, ``\\u2028``...

    The backslash is doubled, so :func:`unescape` gives back ``text`` exactly."""
    if text.isprintable() and "\\" not in text:
        return text
    return _NOT_PLAIN.sub(_escape_run, text)


_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|.)", re.S)
_UNSHORT = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 1:
            return _UNSHORT.get(code, "\\" + code)
        return chr(int(code[1:], 16))

    return _ESCAPE.sub(one, text)


def _json_run(match: re.Match[str]) -> str:
    out = []
    for char in match.group(0):
        if not unsafe(char):
            out.append(char)
            continue
        point = ord(char)
        if point < 0x10000:
            out.append(f"\\u{point:04x}")
        else:  # JSON spells an astral character as its UTF-16 surrogate pair
            point -= 0x10000
            out.append(f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}")
    return "".join(out)


def json_safe(encoded: str) -> str:
    """JSON text with every unsafe character escaped; it decodes to the same value.

    The encoder already escapes C0 controls; DEL, C1 controls, U+2028/2029 and
    invisible format characters it lets through."""
    if encoded.isprintable():
        return encoded
    return _NOT_ASCII_PRINTABLE.sub(_json_run, encoded)


def dumps(value: Any) -> str:
    """``value`` as one line of JSON, safe to log; non-JSON values as their str()."""
    return json_safe(json.dumps(value, ensure_ascii=False, default=str))


_NOT_PLAIN_VALUE = re.compile(r'[,"\\]')


def _token(text: str) -> str:
    if text.isprintable() and _NOT_PLAIN_VALUE.search(text) is None:
        return text
    return json_safe(_dumps(text))


@functools.lru_cache(maxsize=256)
def _key(key: str) -> str:
    return key if _KEY.match(key) else _token(key)  # keys are few: each checked once


def key_values(fields: Mapping[str, Any]) -> str:
    """The seed's ``key=value, key=value``, one line, one reading.

    A value that is not plain (see the module's docstring) is written as a JSON
    string; so is a key that is not a plain name."""
    return ", ".join([f"{_key(key)}={_token(str(value))}" for key, value in fields.items()])


class OneLineFormatter(logging.Formatter):
    """The service log's formatter: each record one line, tracebacks included
    (their line breaks written as ``\\n``), URL secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return escape(mask_url_secrets(super().format(record)))
