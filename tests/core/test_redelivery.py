"""The redelivery window (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnstate.redelivery import SeenWindow, done_mark

DONE = done_mark(1)

NOW = 1_800_000_000


def test_remembered_ids_are_found_and_others_are_not() -> None:
    window = SeenWindow(8)
    seen = b""
    for i in range(5):
        seen = window.remember(seen, window.record(window.token(f"act-{i}"), DONE, NOW))
    assert all(window.contains(seen, window.token(f"act-{i}")) for i in range(5))
    assert not window.contains(seen, window.token("act-5"))
    assert not window.contains(b"", window.token("act-0"))


def test_window_keeps_at_least_size_and_at_most_a_quarter_more() -> None:
    window = SeenWindow(8)
    seen = b""
    for i in range(100):
        seen = window.remember(seen, window.record(window.token(f"a{i}"), DONE, NOW))
        kept = [j for j in range(i + 1) if window.contains(seen, window.token(f"a{j}"))]
        assert len(kept) >= min(i + 1, 8)
        assert len(kept) <= 10
        assert kept == list(range(i + 1 - len(kept), i + 1))  # always the newest ones


def test_old_entries_are_dropped_by_age_when_trimming() -> None:
    window = SeenWindow(4, max_age=60)
    seen = b""
    for i in range(4):
        seen = window.remember(seen, window.record(window.token(f"old-{i}"), DONE, NOW))
    for i in range(2):
        seen = window.remember(seen, window.record(window.token(f"new-{i}"), DONE, NOW + 3600))
    assert not any(window.contains(seen, window.token(f"old-{i}")) for i in range(4))
    assert all(window.contains(seen, window.token(f"new-{i}")) for i in range(2))


def test_size_one() -> None:
    window = SeenWindow(1)
    seen = b""
    for i in range(5):
        seen = window.remember(seen, window.record(window.token(f"x{i}"), DONE, NOW))
    assert window.contains(seen, window.token("x4"))
    assert not window.contains(seen, window.token("x2"))


@given(st.text(min_size=1, max_size=200))
def test_tokens_are_fixed_width_and_json_plain(activity_id: str) -> None:
    token = SeenWindow.token(activity_id)
    assert len(token) == 13 and token[:1] == b"|"
    assert all(c in b"0123456789abcdef" for c in token[1:])


def test_ids_with_a_lone_surrogate_have_their_own_tokens() -> None:
    tokens = {SeenWindow.token(i) for i in ("a\ud800", "a\udc00", "a", "a\ud800b")}
    assert len(tokens) == 4 and all(len(t) == 13 for t in tokens)


def test_invalid_windows() -> None:
    with pytest.raises(ValueError):
        SeenWindow(0)
    with pytest.raises(ValueError):
        SeenWindow(4, max_age=0)


def test_a_window_of_foreign_records_ages_out_without_errors() -> None:
    window = SeenWindow(2, max_age=60)
    seen = b"not-a-record-at-all|zz" * 5
    for i in range(6):
        seen = window.remember(seen, window.record(window.token(f"n{i}"), DONE, NOW))
    assert window.contains(seen, window.token("n5")) and window.contains(seen, window.token("n4"))
    assert b"not-a-record" not in seen
