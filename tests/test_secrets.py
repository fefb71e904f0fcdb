from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from turnstate.errors import SecretValueError, StateValueError
from turnstate.secrets import find_secret


def b64url(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = f"{b64url({'alg': 'RS256', 'typ': 'JWT'})}.{b64url({'sub': '29:1abc', 'exp': 1893456000})}.c2lnbmF0dXJl"
UNSIGNED_JWT = f"{b64url({'alg': 'none'})}.{b64url({'sub': 'x'})}."

# Built from parts so that no scanner mistakes these test fixtures for live credentials.
GITHUB = "ghp" + "_" + "a1B2c3D4" * 4 + "e5F6"
SLACK = "xox" + "b-123456789012-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx"
OPENAI = "sk" + "-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
STRIPE = "sk" + "_live_" + "a1B2c3D4e5F6g7H8"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GOOGLE = "AIza" + "Sy" + "A1b2C3d4" * 4 + "x"
GITLAB = "glpat" + "-" + "xYz12AbC34dEf56GhI78"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEA..."
AZURE = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + "Ab1+" * 16 + "==;"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (JWT, "JWT"),
        (UNSIGNED_JWT, "JWT"),
        (f"Bearer {JWT}", "JWT"),
        ("Authorization: Bearer abcDEF1234567890xyz", "bearer token"),
        ("bearer 0123456789abcdef0123", "bearer token"),
        (GITHUB, "GitHub token"),
        ("github_pat_" + "11ABCDEFG0" * 5, "GitHub token"),
        (SLACK, "Slack token"),
        (OPENAI, "API secret key"),
        ("sk-" + "Ab3dEf6hIj9kLm2nOp5qRs8t", "API secret key"),
        (STRIPE, "Stripe secret key"),
        (AWS, "AWS access key id"),
        (GOOGLE, "Google API key"),
        (GITLAB, "GitLab token"),
        (PEM, "PEM private key"),
        (AZURE, "Azure storage account key"),
        (f"my token is {GITHUB}, keep it safe", "GitHub token"),
    ],
)
def test_credential_shapes_are_found(value: str, kind: str) -> None:
    found = find_secret(value)
    assert found is not None and kind in found


def test_a_jwt_shaped_value_is_detected_without_echoing_it() -> None:
    found = find_secret({"auth": {"token": JWT}})
    assert found == "a JWT (three base64url segments with a JSON header) in 'auth.token'"
    assert JWT not in found and JWT.split(".")[1] not in found


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"tokens": ["x", GITHUB]}, "in 'tokens[1]'"),
        ([{"a.b": {"c": AWS}}], "in '[0].a\\\\.b.c'"),
        ((1, 2, [3, SLACK]), "in '[2][1]'"),
        ({GITHUB: "user-1"}, "as a field name in 'the value'"),
        ({"cache": {GITHUB: 1}}, "as a field name in 'cache'"),
    ],
)
def test_location_inside_the_value_is_reported(value: Any, where: str) -> None:
    found = find_secret(value)
    assert found is not None and found.endswith(where)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "hello",
        "Could you please look at the incident from yesterday about the risk-management-framework rollout?",
        "The bearer of this letter works on internationalization",
        "bearer bonds are not a thing anymore, mostly",
        "sk-this-is-a-long-hyphenated-phrase-without-digits",
        "task-and-desk-and-disk-scheduling-notes",
        "eyJustkidding.this.is.not.a.token",
        "eyJub3QganNvbg.eyJzdWIiOiJ4In0.sig",  # header segment is not JSON
        "https://contoso.sharepoint.com/sites/incident-response/Shared%20Documents/runbook_v2.docx",
        "alice.smith@contoso.onmicrosoft.com",
        str(uuid.UUID(int=0x1234567890ABCDEF1234567890ABCDEF)),
        "19:3f2c1a8b9d7e4f60a1b2c3d4e5f60718@thread.tacv2",
        "29:1GcS4EyB_oSI8A88XmWBN7NJFyMqe3QGnJdgLfFGkJnVelzRGos0bPbpsGnk9Ik8IiUDRbWDM4DOS8Bb9AaTg-nw",
        "a:1Bc2De3Fg4Hi5Jk6Lm7No8Pq9Rs0Tu-Vw_Xy",
        "2026-11-21T10:15:30.123456+00:00",
        "AKIA is how AWS key ids start, but this is prose",
        "Zm9vYmFyYmF6cXV4" * 4,  # plain base64 blob
        "The ASIAN-PACIFIC region and the AKIAN islands",
        "git checkout ghp_branch_name",
        "xoxo-hugs-and-kisses-from-the-team",
        "-----BEGIN CERTIFICATE-----\nMIIB",
    ],
)
def test_ordinary_values_pass(value: str) -> None:
    assert find_secret(value) is None


@pytest.mark.parametrize("value", [None, 0, 12.5, True, b"Bearer abcDEF1234567890xyz", {"n": [1, 2.0, None]}])
def test_non_string_values_pass(value: Any) -> None:
    assert find_secret(value) is None


def test_deeply_nested_values_do_not_overflow_the_stack() -> None:
    value: Any = JWT
    for _ in range(20_000):
        value = {"a": [value]}
    found = find_secret(value)
    assert found is not None and found.startswith("a JWT")


def test_secret_value_error_says_what_to_do_instead() -> None:
    found = find_secret(JWT)
    assert found is not None
    error = SecretValueError("user.token", found)
    assert isinstance(error, StateValueError) and isinstance(error, ValueError)
    assert error.path == "user.token" and error.found == found
    message = str(error)
    assert "'user.token'" in message and "looks like a JWT" in message
    assert "Store a reference instead (a Key Vault secret name, or use the token service)" in message
    assert JWT not in message
