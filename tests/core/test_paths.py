from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnstate.errors import PathError
from turnstate.paths import escape, join, parse


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("count", ("count",)),
        ("conversation.count", ("conversation", "count")),
        ("user.profile.email", ("user", "profile", "email")),
        ("user.settings.a\\.b", ("user", "settings", "a.b")),
        ("a\\\\.b", ("a\\", "b")),
        ("a\\\\\\.b", ("a\\.b",)),
    ],
)
def test_parse(path: str, parts: tuple[str, ...]) -> None:
    assert parse(path) == parts


@pytest.mark.parametrize("path", ["", ".", "a.", ".a", "a..b", "a\\x", "a\\"])
def test_malformed_paths_raise_path_error_naming_the_path(path: str) -> None:
    with pytest.raises(PathError) as info:
        parse(path)
    assert repr(path) in str(info.value)


def test_non_string_path() -> None:
    with pytest.raises(PathError):
        parse(3)  # type: ignore[arg-type]


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_join_then_parse_round_trips(segments: list[str]) -> None:
    assert parse(join(*segments)) == tuple(segments)


@given(st.text(min_size=1))
def test_escaped_segment_is_one_segment(segment: str) -> None:
    assert parse(escape(segment)) == (segment,)
