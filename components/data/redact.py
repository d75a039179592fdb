"""Secrets kept out of what we print: every form a value can take in a message, replaced."""

import json
import re
import urllib.parse
from typing import Iterable, Optional

MARK = "<token>"


def redact(text: str, secrets: Iterable[Optional[str]]) -> str:
    """`text` with each secret removed in every form it could take there: raw, repr, escaped,
    URL-quoted, JSON; longest first, so no secret is left half-replaced."""
    forms = set()
    for secret in (s for s in secrets if s):
        forms |= {secret, repr(secret)[1:-1], secret.encode("unicode_escape").decode(), urllib.parse.quote(secret),
                  urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]}
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        text = text.replace(form, MARK)
    return text


_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")


def without_userinfo(text: str) -> str:
    """`text` with the `user:password@` part of every URL in it removed (`http://u:p@host` -> `http://host`)."""
    return _USERINFO.sub(r"\1", text)
