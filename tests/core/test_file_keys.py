"""File names for keys: reversible, injective under case folding, confined to the directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnstate.errors import InvalidKeyError
from turnstate.storage.base import WriteItem
from turnstate.storage.file import MAX_NAME_LENGTH, FileStorage, decode_key, encode_key
from turnstate.testing.conformance import TRICKY_KEYS

FRAGMENTS = [
    "/",
    "..",
    ".",
    "\x00",
    "A",
    "a",
    "Z",
    "%",
    "%2e",
    "%41",
    "^",
    "^a",
    "@",
    "-",
    "_",
    "\\",
    ":",
    "ü",
    "Ü",
    "ß",
    "İ",
    "ﬁ",
    "日",
    "🙂",
    " ",
    "\t",
    "~",
    "*",
    "92",
    "#",
    "?",
]
KEYS = st.one_of(
    st.text(min_size=1),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=30).map("".join),
    st.text(alphabet="aAbB.%^/", min_size=1, max_size=120),
    st.text(min_size=150, max_size=400),
    st.sampled_from(TRICKY_KEYS),
)


@given(KEYS)
def test_encoding_is_reversible_unless_hashed(key: str) -> None:
    name = encode_key(key)
    if name.startswith("@"):
        assert name == "@" + hashlib.sha256(key.encode()).hexdigest()
        assert decode_key(name) is None
    else:
        assert decode_key(name) == key


@given(KEYS)
def test_names_are_safe_file_names(key: str) -> None:
    name = encode_key(key)
    assert name not in {"", ".", ".."}
    assert not name.startswith(".")  # dot names are reserved for temporary and lock files
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name.isascii() and name.isprintable()
    assert name == name.lower()  # nothing for a case-insensitive file system to fold
    assert len(name.encode()) <= MAX_NAME_LENGTH


@given(KEYS, KEYS)
def test_distinct_keys_never_share_a_name_even_case_folded(a: str, b: str) -> None:
    if a != b:
        assert encode_key(a).lower() != encode_key(b).lower()
        assert encode_key(a).casefold() != encode_key(b).casefold()


@given(KEYS)
def test_case_variants_of_a_key_get_distinct_names(key: str) -> None:
    names = {v: encode_key(v).lower() for v in {key, key.lower(), key.upper(), key.swapcase()}}
    assert len(set(names.values())) == len(names)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\t2", "\\"),
        ("\\", "*92"),
        ("A", "a"),
        ("A", "%41"),
        ("A", "^a"),
        (".a", "%2ea"),
        ("ß", "SS"),
        ("K", "\u212a"),
    ],
)
def test_known_colliding_pairs_of_other_escapers_stay_apart(a: str, b: str) -> None:
    assert encode_key(a).lower() != encode_key(b).lower()


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".a",
        "A",
        "a/b",
        "%",
        "%4",
        "%41",
        "%2E",
        "%g0",
        "^",
        "^A",
        "^1",
        "a b",
        "@abc",
        "@" + "0" * 63,
        "%ff",
        "%2f" * 100,
        "x" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_names_encode_key_never_produces_are_refused(name: str) -> None:
    with pytest.raises(InvalidKeyError):
        decode_key(name)


@given(st.text(alphabet="ab.%^@0123456789f/AZ", max_size=12))
def test_decode_accepts_exactly_the_names_encode_produces(name: str) -> None:
    try:
        key = decode_key(name)
    except InvalidKeyError:
        return
    assert key is not None
    assert encode_key(key) == name


def test_lone_surrogate_key_is_refused() -> None:
    with pytest.raises(InvalidKeyError, match="surrogate"):
        encode_key("abc\ud800")


def test_long_names_switch_to_the_hash_at_the_limit() -> None:
    assert encode_key("a" * MAX_NAME_LENGTH) == "a" * MAX_NAME_LENGTH
    assert encode_key("a" * (MAX_NAME_LENGTH + 1)).startswith("@")
    assert encode_key("A" * 100) == "^a" * 100
    assert encode_key("A" * 101).startswith("@")


def everything_under(root: Path) -> set[str]:
    found = set()
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def test_tricky_keys_never_create_anything_outside_the_directory(tmp_path: Path) -> None:
    """Written through the real storage: every file lands in state/ or state/.locks/, nowhere else."""
    root = tmp_path / "state"
    storage = FileStorage(root, fsync=False)
    written: set[str] = set()
    loop = asyncio.new_event_loop()

    @settings(max_examples=150, deadline=None)
    @given(st.lists(KEYS, min_size=1, max_size=5, unique=True))
    def check(keys: list[str]) -> None:
        loop.run_until_complete(storage.write({k: WriteItem(b'{"k":1}') for k in keys}))
        written.update(keys)
        for path in everything_under(tmp_path):
            parts = Path(path).parts
            assert parts[0] == "state", path
            assert len(parts) <= 2 or (len(parts) == 3 and parts[1] == ".locks"), path
            if len(parts) == 2 and (tmp_path / path).is_dir():
                assert parts[1] == ".locks", path
        assert set(loop.run_until_complete(storage.read(keys))) == set(keys)

    async def listed() -> set[str]:
        return {k async for k in storage.list_keys()}

    try:
        check()
        assert loop.run_until_complete(listed()) == written
        loop.run_until_complete(storage.delete(list(written)))
        assert everything_under(root) == {".locks"}
    finally:
        loop.close()
