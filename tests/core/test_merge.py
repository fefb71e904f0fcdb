"""Three-way merge rules (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from turnstate.merge import ABSENT, MergePolicies, merge


def m(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any], **kw: Any) -> Any:
    deltas = kw.pop("deltas", None)
    result = merge("conversation", base, ours, theirs, MergePolicies(**kw), deltas)
    return result


def test_one_sided_changes_take_that_side() -> None:
    base = {"a": 1, "b": 1, "c": 1, "gone": 1}
    ours = {"a": 2, "b": 1, "c": 1, "gone": 1, "new": 1}
    theirs = {"a": 1, "b": 3, "c": 1, "theirs_new": 1}
    assert m(base, ours, theirs).data == {"a": 2, "b": 3, "c": 1, "new": 1, "theirs_new": 1}


def test_we_delete_a_field_they_did_not_touch() -> None:
    assert m({"a": 1, "b": 1}, {"b": 1}, {"a": 1, "b": 2}).data == {"b": 2}


def test_nested_objects_merge_field_by_field() -> None:
    base = {"incident": {"owner": None, "severity": 3}}
    ours = {"incident": {"owner": "ann", "severity": 3}}
    theirs = {"incident": {"owner": None, "severity": 1}}
    assert m(base, ours, theirs).data == {"incident": {"owner": "ann", "severity": 1}}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("last", 5), ("first", 7), ("sum", 11), ("max", 7)],
)
def test_both_changed_policies(policy: str, expected: int) -> None:
    result = m({"n": 1}, {"n": 5}, {"n": 7}, rules={"conversation.n": policy})
    assert result.data == {"n": expected}
    assert result.conflicts == []


def test_raise_policy_reports_the_path() -> None:
    result = m(
        {"x": {"owner": "a"}},
        {"x": {"owner": "b"}},
        {"x": {"owner": "c"}},
        rules={"conversation.x.owner": "raise"},
    )
    assert result.conflicts == ["conversation.x.owner"]


def test_union_keeps_additions_and_removals_from_both_sides() -> None:
    base = {"ids": ["a", "b", "c"]}
    ours = {"ids": ["a", "c", "d"]}  # removed b, added d
    theirs = {"ids": ["a", "b", "e"]}  # removed c, added e
    result = m(base, ours, theirs, rules={"conversation.ids": "union"})
    assert result.data == {"ids": ["a", "e", "d"]}


def test_custom_function_and_absent() -> None:
    def longest(b: Any, o: Any, t: Any) -> Any:
        if t is ABSENT:
            return ABSENT
        return max(o, t, key=len)

    assert m({"s": "a"}, {"s": "abc"}, {"s": "ab"}, rules={"conversation.s": longest}).data == {"s": "abc"}
    assert m({"s": "a"}, {"s": "abc"}, {}, rules={"conversation.s": longest}).data == {}


def test_incr_deltas_merge_whatever_the_policy() -> None:
    result = m({"n": 10}, {"n": 12}, {"n": 15}, rules={"conversation.n": "first"}, deltas={("n",): 2})
    assert result.data == {"n": 17}
    # a value set after the increment is no longer a pure delta
    result = m({"n": 10}, {"n": 100}, {"n": 15}, deltas={("n",): 2})
    assert result.data == {"n": 100}


def test_delta_on_absent_base_and_theirs() -> None:
    assert m({}, {"n": 1}, {"n": 4}, deltas={("n",): 1}).data == {"n": 5}


def test_policy_on_an_object_treats_it_as_one_value() -> None:
    base = {"assignment": {"who": "a", "at": 1}}
    ours = {"assignment": {"who": "b", "at": 2}}
    theirs = {"assignment": {"who": "c", "at": 1}}
    result = m(base, ours, theirs, rules={"conversation.assignment": "first"})
    assert result.data == {"assignment": {"who": "c", "at": 1}}


def test_wildcards_and_specificity() -> None:
    policies = MergePolicies(
        {
            "conversation.*.count": "sum",
            "conversation.incidents.**": "first",
            "conversation.incidents.x.count": "max",
        }
    )
    assert policies.for_path(("conversation", "a", "count")) == "sum"
    assert policies.for_path(("conversation", "incidents", "y", "z")) == "first"
    assert policies.for_path(("conversation", "incidents", "x", "count")) == "max"
    assert policies.for_path(("conversation", "other")) == "last"


def test_invalid_policies() -> None:
    with pytest.raises(ValueError, match="merge policy"):
        MergePolicies({"conversation.x": "average"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="\\*\\*"):
        MergePolicies({"conversation.**.x": "sum"})
    with pytest.raises(ValueError, match="scope"):
        MergePolicies({"x": "sum"})


def test_inputs_are_not_mutated() -> None:
    base, ours, theirs = {"a": {"b": 1}}, {"a": {"b": 2}}, {"a": {"b": 1, "c": 3}}
    m(base, ours, theirs)
    assert (base, ours, theirs) == ({"a": {"b": 1}}, {"a": {"b": 2}}, {"a": {"b": 1, "c": 3}})


def test_two_increments_to_the_same_value_both_count() -> None:
    assert m({"n": 0}, {"n": 1}, {"n": 1}, deltas={("n",): 1}).data == {"n": 2}
    nested = m({"s": {"n": 0}}, {"s": {"n": 1}}, {"s": {"n": 1}}, deltas={("s", "n"): 1})
    assert nested.data == {"s": {"n": 2}}


def test_equal_changes_under_sum_add_up() -> None:
    assert m({"n": 0}, {"n": 1}, {"n": 1}, rules={"conversation.n": "sum"}).data == {"n": 2}
    assert m({"n": 0}, {"n": 1}, {"n": 1}).data == {"n": 1}  # last writer wins: same value, no conflict
