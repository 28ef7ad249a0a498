"""What may be a secret, and masking it in free text.

Probes and actions scrub the secrets they know (a DSN's password, a token
header). This module catches the ones nobody listed: a name that looks secret
(``api_key``, ``X-Auth-Token``, ``DB_PASSWORD``) and, in any text, a URL's
password or a query parameter named like a secret (``?token=...``,
``&X-Amz-Signature=...``). It errs on the side of masking: a value hidden by
mistake costs a look at the config, a value shown by mistake costs a rotation.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# Whole words that are secrets on their own; a name is split into words at
# "_", "-", "." and camelCase humps ("sessionToken" -> "session", "token").
_SECRET_WORDS = frozenset({"pass", "pwd", "pw", "sig", "dsn", "jwt", "auth", "sas", "otp"})
_SECRET_ENDINGS = (
    "password",
    "passwd",
    "passphrase",
    "key",
    "token",
    "secret",
    "signature",
    "cookie",
    "credential",
    "credentials",
)
_SECRET_BEGINNINGS = (
    "secret",
    "token",
    "passw",
    "authoriz",
    "authtoken",
    "authkey",
    "session",
    "private",
    "bearer",
    "credential",
    "signature",
    "cookie",
)
_HUMP = re.compile(r"([a-z0-9])([A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")

# scheme://user:password@ -> scheme://user:***@
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)([^\s/@]+)@")
# ?name=value or &name=value (or ;name=value): the value, when the name looks secret.
_QUERY_PARAM = re.compile(r"([?&;])([^\s=&;#?\"']+)=([^\s&;#\"']*)")


def looks_secret(name: str) -> bool:
    """Whether a field, header, variable or parameter called ``name`` may hold a secret."""
    words = _WORD_SPLIT.split(_HUMP.sub(r"\1_\2", name).lower())
    return any(
        word in _SECRET_WORDS
        or word.endswith(_SECRET_ENDINGS)
        or word.startswith(_SECRET_BEGINNINGS)
        for word in words
        if word
    )


def _masked_param(match: re.Match[str]) -> str:
    lead, name, value = match.groups()
    if not value or value == MASK or not looks_secret(name):
        return match.group(0)
    return f"{lead}{name}={MASK}"


def mask_url_secrets(text: str) -> str:
    """``text`` with URL passwords and secret-named query parameters replaced by ``***``."""
    if "://" not in text and "=" not in text:  # the usual case: nothing to look at
        return text
    if "@" in text:
        text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_masked_param, text)
    return text


def mask_in(value: Any) -> Any:
    """``value`` with :func:`mask_url_secrets` applied to every string in it."""
    if isinstance(value, str):
        return mask_url_secrets(value)
    if isinstance(value, dict):
        return {key: mask_in(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_in(item) for item in value]
    return value
