from __future__ import annotations

import base64
import hashlib
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


# -- a corpus of credentials and of ordinary values, with the guard's error counts ----------------------


def _b64(size: int, seed: int) -> str:
    """Deterministic base64 of ``size`` bytes that look random."""
    return base64.b64encode(bytes((i * 151 + seed * 29 + 7) % 256 for i in range(size))).decode()


def _urlencoded(text: str) -> str:
    return text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


ACCOUNT_KEY = _b64(64, 1)  # the form of a storage or Cosmos DB account key: 88 characters ending in '=='
SAS_SIG = _urlencoded(_b64(32, 2))
SAS_QUERY = "sv=2022-11-02&ss=b&srt=sco&sp=rwdlacupiytfx&se=2026-12-31T23:59:59Z&st=2026-01-01T00:00:00Z"
BASIC = base64.b64encode(b"svc-incident-bot:Tr0ub4dor&3-horse").decode()

CREDENTIALS = [
    f"https://contoso.blob.core.windows.net/reports/q3.pdf?{SAS_QUERY}&spr=https&sig={SAS_SIG}",
    f"?{SAS_QUERY}&sig={SAS_SIG}",
    f"{SAS_QUERY}&sig={SAS_SIG}",
    f"sig={SAS_SIG}&se=2026-12-31&sp=r&sv=2022-11-02",
    f"Authorization: Basic {BASIC}",
    f"basic {BASIC}",
    f"the header was 'Basic {BASIC}' when it failed",
    ACCOUNT_KEY,
    f'{{"primaryMasterKey": "{ACCOUNT_KEY}"}}',
    f"key1 {ACCOUNT_KEY} key2",
    f"DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net",
    f"AccountEndpoint=https://contoso.documents.azure.com:443/;AccountKey={ACCOUNT_KEY};",
    f"Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={_b64(32, 3)}",
    f"Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature "
    f"sr=contoso.servicebus.windows.net&sig={SAS_SIG}&se=1893456000&skn=send",
    f"SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd1&sig={SAS_SIG}&se=1893456000",
    f"BlobEndpoint=https://contoso.blob.core.windows.net/;SharedAccessSignature={SAS_QUERY}&sig={SAS_SIG}",
    "Server=tcp:contoso.database.windows.net,1433;Database=bot;User ID=bot;Password=Tr0ub4dor&3;",
    "Host=db.contoso.internal;Username=bot;PWD=correct-horse-battery",
    f"Authorization: SharedKey contoso:{_b64(32, 4)}",
    "Authorization: Bearer " + "abc" + "DEF1234567890xyzQRS",
    "redis://:" + "s3cr3t-pa55word" + "@cache.contoso.internal:6380/0",
    "https://bot-user:" + "Tr0ub4dor&3" + "@git.contoso.internal/repo.git",
    "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY=" + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    JWT,
    GITHUB,
    "github_pat_" + "11ABCDEFG0" * 5,
    SLACK,
    "xapp-1-A0123456789-1234567890123-" + "0123456789abcdef" * 2,
    OPENAI,
    STRIPE,
    AWS,
    GOOGLE,
    GITLAB,
    PEM,
]

ORDINARY = [
    "Could you please look at the incident from yesterday about the risk-management-framework rollout?",
    "I forgot my password again, can you reset it? The password policy says 12 characters.",
    "password reset requested by alice; the new password was sent to her by SMS",
    "Please set Password= in the form, not in the chat",
    "Basic training starts on Monday; basic questions go to the help desk",
    "Our BASIC interpreter from 1983 still runs the billing job",
    "The bearer of this letter works on internationalization",
    "sig= is where the signature goes in a SAS URL, never paste one here",
    "signature: Ann Example, on-call lead (sig=ann)",
    "https://contoso.blob.core.windows.net/public/logo.png",
    "https://contoso.sharepoint.com/sites/incident-response/Shared%20Documents/runbook_v2.docx",
    "https://learn.microsoft.com/en-us/azure/storage/common/storage-sas-overview?tabs=azure-portal",
    "https://portal.azure.com/#@contoso.onmicrosoft.com/resource/subscriptions/1234",
    "mailto:alice@contoso.com?subject=incident%20report",
    "see https://status.contoso.com or write to oncall@contoso.com",
    "alice.smith@contoso.onmicrosoft.com",
    str(uuid.UUID(int=0x1234567890ABCDEF1234567890ABCDEF)),
    str(uuid.uuid5(uuid.NAMESPACE_URL, "https://contoso.com/incident/42")),
    "d41d8cd98f00b204e9800998ecf8427e",  # md5
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # sha1
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # sha256
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    hashlib.sha512(b"").hexdigest(),
    "sha512-" + base64.b64encode(hashlib.sha512(b"").digest()).decode(),  # subresource integrity
    "data:image/png;base64," + _b64(64, 5),
    "data:image/png;base64," + _b64(300, 6),
    _b64(300, 7),  # a base64 attachment
    _b64(48, 8),  # 64 characters of base64
    "Zm9vYmFyYmF6cXV4" * 4,
    "19:3f2c1a8b9d7e4f60a1b2c3d4e5f60718@thread.tacv2",
    "19:meeting_NmFmMjM0ZDEtYjQ2OS00ZjYzLWE0ZTMtNjk0ZDEyMzQ1Njc4@thread.v2",
    "29:1GcS4EyB_oSI8A88XmWBN7NJFyMqe3QGnJdgLfFGkJnVelzRGos0bPbpsGnk9Ik8IiUDRbWDM4DOS8Bb9AaTg-nw",
    "29:1abcDEF23ghiJKL45mnoPQR67stuVWX89yz",
    "a:1Bc2De3Fg4Hi5Jk6Lm7No8Pq9Rs0Tu-Vw_Xy",
    "8:orgid:2d4f6a8c-1b3d-4e5f-8a7b-9c0d1e2f3a4b",
    "2026-11-21T10:15:30.123456+00:00",
    "Server=tcp:contoso.database.windows.net,1433;Database=bot;Authentication=Active Directory Default;",
    "AccountName=contoso;EndpointSuffix=core.windows.net",
    "AKIA is how AWS key ids start, but this is prose",
    "git checkout ghp_branch_name",
    "xoxo-hugs-and-kisses-from-the-team",
    "-----BEGIN CERTIFICATE-----\nMIIB",
    "sk-this-is-a-long-hyphenated-phrase-without-digits",
    "eyJustkidding.this.is.not.a.token",
    "ticket INC0012345: disk /dev/sda1 at 97% on web-01 (threshold == 95%)",
    "if (a == b && c == d) { return x; } // comparison, not a key",
]


def test_the_guard_finds_every_credential_of_the_corpus_and_nothing_else() -> None:
    missed = [value for value in CREDENTIALS if find_secret(value) is None]
    flagged = [(value, find_secret(value)) for value in ORDINARY if find_secret(value) is not None]
    print(
        f"secrets corpus: {len(CREDENTIALS)} credentials, {len(ORDINARY)} ordinary values; "
        f"false negatives {len(missed)}, false positives {len(flagged)}"
    )
    assert (len(missed), len(flagged)) == (0, 0), (missed, flagged)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (CREDENTIALS[0], "shared access signature"),
        (CREDENTIALS[4], "HTTP Basic credentials"),
        (ACCOUNT_KEY, "account key"),
        (CREDENTIALS[13], "shared access signature"),
        (CREDENTIALS[16], "password in a connection string"),
        (CREDENTIALS[18], "Shared Key"),
        (CREDENTIALS[20], "password in a URL"),
        (CREDENTIALS[22], "AWS secret access key"),
    ],
)
def test_azure_and_http_credentials_are_named_without_echoing_them(value: str, kind: str) -> None:
    found = find_secret({"incident": {"link": value}})
    assert found is not None and kind in found and found.endswith("in 'incident.link'")
    for part in (SAS_SIG, BASIC, ACCOUNT_KEY, "Tr0ub4dor"):
        assert part not in found
