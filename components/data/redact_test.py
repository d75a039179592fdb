"""Tests of redaction: a secret in any form a message can carry it."""

import json
import urllib.parse

from components.data.redact import MARK, redact


def test_every_form_of_a_secret_is_replaced():
    token = 'ab"c\\d /x'
    for text in (f"Bearer {token}", repr(f"Bearer {token}"), json.dumps(f"Bearer {token}"),
                 f"b'Bearer {token}'".encode().decode("unicode_escape"), f"http://h/?t={urllib.parse.quote(token)}",
                 f"t={urllib.parse.quote_plus(token)}"):
        out = redact(text, [token])
        assert "ab" not in out and MARK in out, (text, out)


def test_several_secrets_and_none():
    assert redact("user k1, key key-two", ["k1", "key-two", None, ""]) == f"user {MARK}, key {MARK}"
    assert redact("nothing here", []) == "nothing here"
