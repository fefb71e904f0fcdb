"""Key-to-id encoding: reversible, injective, never a forbidden character, never longer than Cosmos allows."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnstate_cosmos import MAX_ID_LENGTH
from turnstate_cosmos._keys import HASHED_PREFIX, is_hashed, item_id, key_of

from turnstate.errors import InvalidKeyError
from turnstate.testing.conformance import TRICKY_KEYS

FORBIDDEN = set("/\\?#")
# Keys rich in the characters that need escaping, so collisions would show up.
keys = st.text(
    alphabet=st.sampled_from(
        ["a", "%", "/", "\\", "?", "#", "*", "2", "0", "F", " ", "\n", "\t", "\x00", "ü", "🙂"]
    ),
    min_size=1,
) | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1)


@given(keys)
def test_id_is_a_valid_cosmos_id(key: str) -> None:
    """No id contains / \\ ? # or a control character or a final space or newline; none is over 255 long."""
    name = item_id(key)
    assert 0 < len(name) <= MAX_ID_LENGTH
    assert not FORBIDDEN & set(name)
    assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in name)
    assert not name.endswith((" ", "\n"))


@given(keys)
def test_escaped_id_decodes_to_the_key(key: str) -> None:
    """Every id that is not hashed decodes back to exactly its key."""
    name = item_id(key)
    if is_hashed(name):
        assert len(key) > MAX_ID_LENGTH // 3
    else:
        assert key_of(name) == key


@given(keys, keys)
def test_different_keys_get_different_ids(first: str, second: str) -> None:
    """The encoding is injective (for hashed ids, as far as SHA-256 is)."""
    if first != second:
        assert item_id(first) != item_id(second)


def test_the_known_bot_framework_collision_does_not_happen() -> None:
    """Keys that Bot Framework's escaping maps to one id ('\\t2', '\\\\', '*92') stay apart here."""
    ids = {item_id(key) for key in ("\t2", "\\", "*92", "%5C", "%092")}
    assert len(ids) == 5


@pytest.mark.parametrize("key", TRICKY_KEYS, ids=lambda k: repr(k)[:24])
def test_tricky_keys_round_trip(key: str) -> None:
    name = item_id(key)
    assert key_of(name) == key if not is_hashed(name) else len(key) > 85


def test_long_key_is_hashed_and_short_key_is_not() -> None:
    """Keys whose escaped form fits 255 characters are kept readable; longer ones become %h + SHA-256."""
    assert item_id("x" * MAX_ID_LENGTH) == "x" * MAX_ID_LENGTH
    long_key = "x" * (MAX_ID_LENGTH + 1)
    assert item_id(long_key) == HASHED_PREFIX + hashlib.sha256(long_key.encode()).hexdigest()
    # Escaping can push a short key over the limit: 100 slashes escape to 300 characters.
    assert is_hashed(item_id("/" * 100))
    assert key_of(item_id("x" * 300)) is None


def test_escaped_ids_never_look_hashed() -> None:
    """A key starting with '%h' escapes to '%25h', so it cannot be mistaken for a hashed id."""
    assert item_id("%h" + "0" * 64) == "%25h" + "0" * 64


@pytest.mark.parametrize(
    "key, expected",
    [
        ("incident 42 ", "incident 42%20"),
        ("a  ", "a %20"),
        (" ", "%20"),
        ("a \n", "a %0A"),
        ("a%20", "a%2520"),
        ("a%20 ", "a%2520%20"),
    ],
)
def test_only_a_final_space_is_escaped(key: str, expected: str) -> None:
    """The SDK refuses ids ending in a space; spaces elsewhere stay as they are, so ids stay readable."""
    assert item_id(key) == expected
    assert key_of(expected) == key


@pytest.mark.parametrize("bad", ["%", "%2", "%zz", "%41", "a/b", "a\tb", "a ", "a%20b"])
def test_ids_that_no_key_encodes_to_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an escaped key"):
        key_of(bad)


def test_key_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidKeyError, match="UTF-8"):
        item_id("lone-\udc80-surrogate")


@pytest.mark.parametrize("key", [".", ".."])
def test_ids_that_a_url_would_read_as_a_relative_path_are_escaped(key: str) -> None:
    assert item_id(key) not in (".", "..") and key_of(item_id(key)) == key
