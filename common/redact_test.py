"""Tests of redaction: a secret in any form a message can carry it."""

import json
import urllib.parse

import pytest

from common.redact import MARK, endpoint_for_messages, endpoint_problem, redact, without_userinfo


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


@pytest.mark.parametrize("endpoint, host", [
    ("u:PW@host:9", "host:9"),                        # the documented form, no scheme
    ("http://u:P/W@host:9", "http://host:9"),          # a '/' in the password
    ("http://u:P W@host:9", "http://host:9"),          # a space
    ("http://u:P@W@host:9", "http://host:9"),          # an '@': half of it was printed
    ("https://u:%40PW@host:9/", "https://host:9/"),    # URL-quoted
])
def test_a_password_in_an_endpoint_is_found_whole_and_never_shown(endpoint, host):
    """Each was printed whole (with an '@' in it, half) by a pattern that stopped at the first '/', space or '@'."""
    assert endpoint_problem(endpoint).startswith("carries user:password@")
    shown = endpoint_for_messages(endpoint)
    assert shown == host.replace("://", "://<user info>@") if "://" in host else shown == "<user info>@" + host
    password = endpoint.rpartition("@")[0].partition(":")[2].rpartition(":")[2] if "://" in endpoint else "PW"
    for form in (f"connect to {endpoint} failed", repr(endpoint), json.dumps(endpoint)):
        assert password not in without_userinfo(form, [endpoint]), form


@pytest.mark.parametrize("endpoint", ["minio.x:9000\nX-Injected: 1", "host:9/path", "host 9", "http://", "h\x00:9"])
def test_an_endpoint_that_is_not_host_and_port_is_refused(endpoint):
    assert endpoint_problem(endpoint).startswith("is not host[:port]")
    assert "\n" not in endpoint_for_messages(endpoint)


@pytest.mark.parametrize("endpoint", ["seaweedfs.kubeflow:9000", "http://127.0.0.1:9000", "https://s3.amazonaws.com/",
                                      "[::1]:9000", "minio-service.kubeflow:9000"])
def test_store_endpoints_pass(endpoint):
    assert endpoint_problem(endpoint) == "" and endpoint_for_messages(endpoint) == endpoint
