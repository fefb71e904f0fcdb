"""Key-to-blob-name mapping: reversible, injective, never a name Blob Storage or its clients would alter."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnstate_blob import MAX_NAME_LENGTH
from turnstate_blob._names import HASHED_PREFIX, MAX_SEGMENTS, blob_name, is_hashed, key_of, name_prefix

from turnstate.errors import InvalidKeyError
from turnstate.testing.conformance import TRICKY_KEYS

# Keys rich in the characters the escaping treats specially, so collisions would show up.
keys = st.text(
    alphabet=st.sampled_from(
        ["a", "%", "/", ".", "\\", "?", "#", "2", "E", "F", " ", "\n", "\x00", "ü", "🙂"]
    ),
    min_size=1,
) | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1)


@given(keys)
def test_name_is_a_name_blob_storage_keeps_as_it_is(key: str) -> None:
    """ASCII only, at most 1,024 characters and 254 segments, no empty, '.' or '..' segment, no final '.'."""
    name = blob_name(key)
    assert 0 < len(name) <= MAX_NAME_LENGTH and name.isascii()
    assert "\\" not in name and all(0x20 < ord(ch) < 0x7F for ch in name)
    segments = name.split("/")
    assert len(segments) <= MAX_SEGMENTS
    assert all(segment and not segment.endswith(".") for segment in segments)


@given(keys)
def test_escaped_name_decodes_to_the_key(key: str) -> None:
    name = blob_name(key)
    assert key_of(name) == key if not is_hashed(name) else len(key) > MAX_NAME_LENGTH // 12


@given(keys, keys)
def test_different_keys_get_different_names(first: str, second: str) -> None:
    if first != second:
        assert blob_name(first) != blob_name(second)


@given(keys, keys)
def test_name_prefix_is_a_prefix_of_every_longer_keys_escaped_name(prefix: str, rest: str) -> None:
    name = blob_name(prefix + rest)
    if not is_hashed(name):
        assert name.startswith(name_prefix(prefix))


@pytest.mark.parametrize("key", TRICKY_KEYS, ids=lambda k: repr(k)[:24])
def test_tricky_keys_round_trip(key: str) -> None:
    name = blob_name(key)
    assert key_of(name) == key if not is_hashed(name) else len(key) > 300


@pytest.mark.parametrize(
    "key, expected",
    [
        ("conversation/channel=msteams/conversation=19:abc@thread.v2", None),
        (".", "%2E"),
        ("..", ".%2E"),
        ("a/../b", "a/.%2E/b"),
        ("a/./b", "a/%2E/b"),
        ("end.", "end%2E"),
        ("dir./x", "dir%2E/x"),
        ("/lead", "%2Flead"),
        ("trail/", "trail%2F"),
        ("a//b", "a/%2Fb"),
        ("a\\b", "a%5Cb"),
        ("50%", "50%25"),
        ("a b\t", "a%20b%09"),
        ("é", "%C3%A9"),
        ("CaseSensitive", None),
    ],
)
def test_names_that_clients_would_change_are_escaped(key: str, expected: str | None) -> None:
    assert blob_name(key) == (key if expected is None else expected)
    assert key_of(blob_name(key)) == key


def test_long_keys_and_keys_of_too_many_segments_are_hashed() -> None:
    assert blob_name("x" * MAX_NAME_LENGTH) == "x" * MAX_NAME_LENGTH
    long_key = "x" * (MAX_NAME_LENGTH + 1)
    assert blob_name(long_key) == HASHED_PREFIX + hashlib.sha256(long_key.encode()).hexdigest()
    assert is_hashed(blob_name("a/" * MAX_SEGMENTS + "a"))
    assert not is_hashed(blob_name("a/" * (MAX_SEGMENTS - 1) + "a"))
    assert is_hashed(blob_name("é" * 200))  # 1,200 characters escaped
    assert key_of(blob_name(long_key)) is None


def test_escaped_names_never_look_hashed() -> None:
    assert blob_name("%h" + "0" * 64) == "%25h" + "0" * 64


@pytest.mark.parametrize("bad", ["%", "%2", "%zz", "%41", "%2e", "a.", "a/", "/a", "%C3", "a//b", "a b"])
def test_names_that_no_key_escapes_to_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an escaped key"):
        key_of(bad)


def test_key_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidKeyError, match="UTF-8"):
        blob_name("lone-\udc80-surrogate")
