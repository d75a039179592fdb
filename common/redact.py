"""What we print, made safe: secrets kept out in every form a value can take in a message, and
text from outside (file names) kept from acting on the terminal or the page."""

import json
import re
import urllib.parse
from typing import Iterable, Optional, Tuple

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


# What an endpoint's host[:port] may hold: a DNS name or IPv4 address, or an IPv6 one in brackets.
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?/?")


def split_endpoint(endpoint: str) -> Tuple[str, str, str]:
    """(scheme with its '://' or '', user info, the rest) of a store endpoint (`host:port` or a URL).

    Read as a URL's authority is, but from the right: everything before the last '@' is user
    info, so a password holding '@', '/' or a space is all of it (a pattern stopped at the first).
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    userinfo, at, host = rest.rpartition("@")
    return (scheme + sep if sep else ""), (userinfo if at else ""), host


def endpoint_problem(endpoint: str) -> str:
    """What is wrong with a store endpoint ('' if nothing): user info, or more than host[:port]
    (a path, a space, a newline that would become a header)."""
    _, userinfo, host = split_endpoint(endpoint)
    if userinfo:
        return ("carries user:password@; give the keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a secret) "
                "instead")
    if not _HOST_PORT.fullmatch(host):
        return "is not host[:port] (letters, digits, '.', '-'; no path, spaces or control characters)"
    return ""


def endpoint_for_messages(endpoint: str) -> str:
    """A store endpoint as a message may show it: without its user info, and a host that is not
    one shown as a Python literal (a newline stays on its line)."""
    scheme, userinfo, host = split_endpoint(endpoint)
    shown = host if _HOST_PORT.fullmatch(host) else repr(host[:80])
    return f"{scheme}{'<user info>@' if userinfo else ''}{shown}"


def without_userinfo(text: str, endpoints: Iterable[Optional[str]]) -> str:
    """`text` with the user info of each of these endpoints removed in every form (`redact`):
    the endpoints are parsed, so the text needs no pattern to find their passwords."""
    secrets = []
    for endpoint in (e for e in endpoints if e):
        _, userinfo, _ = split_endpoint(endpoint)
        if userinfo:
            secrets += [userinfo, userinfo.partition(":")[2]]
    return redact(text, secrets)


# Characters that act instead of showing: C0 controls but tab and newline (ESC starts a terminal
# escape sequence: ESC[2J clears the screen), DEL, C1 controls, line and paragraph separators and
# the bidirectional overrides and isolates (text shown in another order than it is read).
_ACTING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every character that would act on a terminal or a page written as its Python
    escape (`\\x1b`, `\\u202e`); tabs and newlines stay."""
    return _ACTING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
