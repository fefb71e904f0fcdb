"""The secrets guard: refuse to store values that look like credentials.

State outlives the token it would hold and is read by more code than the token's audience, so bearer
tokens, JWTs, API keys, passwords, account keys and shared access signatures do not belong there: store a
reference (a Key Vault secret name) or get the token from the token service when it is needed.
:func:`find_secret` spots the common shapes; it is tuned to let ordinary text through, and it is cheap for
short strings.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from turnstate.paths import escape

MIN_LENGTH = 20
"""No shape we look for is shorter than this, so shorter strings are passed without any search."""

# Cost model: looking for one character is a memchr (a fraction of a nanosecond per character); a
# substring or regex scan is about a nanosecond per character. So each group of shapes is gated first by
# one character all of them contain, then by one regex that looks around it for the shapes' prefixes; only
# when both pass are the group's shapes matched in full. Shapes start with a literal too; the word boundary
# before a match is checked in code, and a shape may take a closer look at its match before it counts.


def _random_looking(token: str) -> bool:
    """True if the token mixes at least two of lowercase, uppercase and digits, as generated ones do."""
    lower = token.upper() != token
    upper = token.lower() != token
    digit = _DIGIT.search(token) is not None
    return lower + upper + digit >= 2


def _random_after_prefix(match: re.Match[str]) -> bool:
    return _random_looking(match.group(0)[3:])


def _random_signature(match: re.Match[str]) -> bool:
    return _random_looking(match.group(1))


def _account_key(match: re.Match[str]) -> bool:
    # a data URI's payload may have the same length; it says what it is
    return _random_looking(match.group(0)) and not match.string.endswith("base64,", 0, match.start())


_Shape = tuple[re.Pattern[str], str, Callable[[re.Match[str]], bool] | None]

_DIGIT = re.compile(r"[0-9]")

_GROUPS: tuple[tuple[str, re.Pattern[str], tuple[_Shape, ...]], ...] = (
    (
        "-",
        re.compile(r"-(?:(?<=xox[abposr]-)|(?<=xapp-)|(?<=glpat-)|(?<=sk-)|(?=BEGIN ))"),
        (
            (re.compile(r"xox[abposr]-[0-9]+-[A-Za-z0-9-]{8,}"), "a Slack token ('xoxb-...')", None),
            (
                re.compile(r"xapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-f0-9]{16,}"),
                "a Slack app token ('xapp-...')",
                None,
            ),
            (re.compile(r"glpat-[A-Za-z0-9_-]{20,}"), "a GitLab token ('glpat-...')", None),
            (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key", None),
            (
                re.compile(r"sk-(?:[a-z]{2,8}-)?[A-Za-z0-9_-]{20,}"),
                "an API secret key ('sk-...')",
                _random_after_prefix,
            ),
        ),
    ),
    (
        "_",
        re.compile(r"_(?:(?<=gh[pousr]_)|(?<=github_pat_)|(?<=k_live_)|(?<=k_test_)|(?<=[Aa][Ww][Ss]_))"),
        (
            (
                re.compile(
                    r"(?i:aws_secret_access_key)[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
                ),
                "an AWS secret access key",
                None,
            ),
            (re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"), "a GitHub token ('ghp_...')", None),
            (re.compile(r"github_pat_[A-Za-z0-9_]{40,}"), "a GitHub token ('github_pat_...')", None),
            (
                re.compile(r"[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
                "a Stripe secret key ('sk_live_...')",
                None,
            ),
        ),
    ),
    (
        "=",
        re.compile(
            r"=(?:(?<=AccountKey=)|(?<=SharedAccessKey=)|(?<=SharedAccessSignature=)|(?<=sig=)|(?<===)"
            r"|(?<=[Pp]assword=)|(?<=PASSWORD=)|(?<=[Pp]wd=)|(?<=PWD=))|SharedKey"
        ),
        (
            (re.compile(r"AccountKey=[A-Za-z0-9+/]{40,}"), "an Azure storage account key", None),
            (re.compile(r"SharedAccessKey=[A-Za-z0-9+/]{30,}"), "an Azure shared access key", None),
            # in a URL or query string; the signature is URL-encoded base64
            (
                re.compile(r"sig=((?:[A-Za-z0-9+/_-]|%2[BbFf]){16,}(?:=|%3[Dd]){0,2})"),
                "a shared access signature ('sig=...' of a SAS URL or token)",
                _random_signature,
            ),
            (
                re.compile(r"SharedAccessSignature=\S{20,}"),
                "an Azure shared access signature ('SharedAccessSignature=...')",
                None,
            ),
            # 64 bytes of base64, not inside a longer run: the form of storage and Cosmos DB account keys
            (
                re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])"),
                "an Azure storage or Cosmos DB account key (88 base64 characters ending in '==')",
                _account_key,
            ),
            (
                re.compile(r"(?<=;)\s*(?:[Pp]assword|PASSWORD|[Pp]wd|PWD)=[^;\s]{4,}"),
                "a password in a connection string ('...;Password=...')",
                None,
            ),
            # Azure storage's Shared Key authorization: base64 of 32 bytes, so it ends in '='
            (
                re.compile(r"SharedKey(?:Lite)? +[A-Za-z0-9-]+:[A-Za-z0-9+/]{40,}="),
                "an Azure Shared Key signature ('SharedKey account:...')",
                None,
            ),
        ),
    ),
    (
        "A",
        re.compile(r"A(?:KIA|SIA|Iza)"),
        (
            (re.compile(r"AKIA[A-Z0-9]{16}\b"), "an AWS access key id ('AKIA...')", None),
            (re.compile(r"ASIA[A-Z0-9]{16}\b"), "an AWS temporary access key id ('ASIA...')", None),
            (re.compile(r"AIza[A-Za-z0-9_-]{35}"), "a Google API key ('AIza...')", None),
        ),
    ),
)

# Shapes that need a closer look at the match before they count.
_BEARER = re.compile(r"[Bb]earer\s+([A-Za-z0-9._~+/-]{16,}=*)")
_JWT = re.compile(r"eyJ([A-Za-z0-9_-]{4,})\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# HTTP Basic credentials, base64 of "user:password" after one or more spaces (RFC 7235)
_BASIC = re.compile(r"[Bb]asic +([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])")
# a password in a URL's user information (https://user:password@host, redis://:password@host)
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@?#]*:[^/\s:@?#]{3,}@[A-Za-z0-9[]")

_JWT_NAME = "a JWT (three base64url segments with a JSON header)"
_BEARER_NAME = "a bearer token ('Bearer ...')"
_BASIC_NAME = "HTTP Basic credentials ('Basic <base64 of user:password>')"
_URL_PASSWORD_NAME = "a password in a URL ('scheme://user:password@host')"


def _jwt_header(segment: str) -> bool:
    """True if ``"eyJ" + segment`` is base64url of a JSON object naming an algorithm or type."""
    text = "eyJ" + segment
    try:
        raw = binascii.a2b_base64(
            (text + "=" * (-len(text) % 4)).replace("-", "+").replace("_", "/"), strict_mode=True
        )
        header = msgspec.json.decode(raw)
    except (binascii.Error, msgspec.DecodeError):
        return False
    return type(header) is dict and ("alg" in header or "typ" in header or "enc" in header)


def _basic_credentials(token: str) -> bool:
    """True if ``token`` is base64 of printable ``user:password`` text."""
    try:
        raw = binascii.a2b_base64(token, strict_mode=True)
    except binascii.Error:
        return False
    _, colon, password = raw.partition(b":")
    return bool(colon and password) and all(32 <= byte < 127 for byte in raw)


def _matches(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """Matches of ``pattern`` that start a word (not preceded by a letter or digit)."""
    for match in pattern.finditer(text):
        start = match.start()
        if start == 0 or not text[start - 1].isalnum():
            yield match


def _check_string(text: str) -> str | None:
    if "." in text and "eyJ" in text:
        for match in _matches(_JWT, text):
            if _jwt_header(match.group(1)):
                return _JWT_NAME
    if "earer" in text:
        for match in _matches(_BEARER, text):
            if _random_looking(match.group(1)):
                return _BEARER_NAME
    if " " in text and "asic" in text:
        for match in _matches(_BASIC, text):
            if _basic_credentials(match.group(1)):
                return _BASIC_NAME
    if ":" in text and "@" in text and "://" in text and _URL_PASSWORD.search(text) is not None:
        return _URL_PASSWORD_NAME
    for char, gate, shapes in _GROUPS:
        if char in text and gate.search(text) is not None:
            for pattern, name, closer in shapes:
                for match in _matches(pattern, text):
                    if closer is None or closer(match):
                        return name
    return None


_Location = tuple["_Location", str | int] | None
"""Where a value sits: (parent location, field name or list index), None for the top."""


def _where(location: _Location, last: str | int | None = None) -> str:
    steps: list[str | int] = [] if last is None else [last]
    while location is not None:
        location, step = location
        steps.append(step)
    parts: list[str] = []
    for step in reversed(steps):
        if type(step) is int:
            parts.append(f"[{step}]")
        else:
            parts.append(("." if parts else "") + escape(str(step)))
    return "".join(parts)


def find_secret(value: Any) -> str | None:
    """Describe what in ``value`` looks like a credential, or return None.

    ``value`` is JSON-like (str, dict, list, tuple, numbers, None); object keys are checked too. The
    description names the kind of credential and where it sits inside ``value`` (as ``'auth.token'``
    or ``'tokens[0]'``), never the text itself.
    """
    if type(value) is str:
        if len(value) < MIN_LENGTH:
            return None
        return _check_string(value)
    if type(value) is not dict and type(value) is not list and type(value) is not tuple:
        return None
    # Iterative, so any nesting depth works; locations are linked to their parent, not copied.
    stack: list[tuple[Any, _Location]] = [(value, None)]
    pop = stack.pop
    push = stack.append
    while stack:
        current, location = pop()
        if type(current) is dict:
            for key, item in current.items():
                cls = type(item)
                if cls is str:
                    if len(item) >= MIN_LENGTH and (found := _check_string(item)) is not None:
                        return f"{found} in {_where(location, key)!r}"
                elif cls is dict or cls is list or cls is tuple:
                    push((item, (location, key)))
                if type(key) is str and len(key) >= MIN_LENGTH and (found := _check_string(key)) is not None:
                    return f"{found} as a field name in {_where(location) or 'the value'!r}"
        else:
            for index, item in enumerate(current):
                cls = type(item)
                if cls is str:
                    if len(item) >= MIN_LENGTH and (found := _check_string(item)) is not None:
                        return f"{found} in {_where(location, index)!r}"
                elif cls is dict or cls is list or cls is tuple:
                    push((item, (location, index)))
    return None
