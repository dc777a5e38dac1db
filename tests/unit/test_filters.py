"""Trigger filter dialects: legacy attributes, exact, prefix, suffix, all, any, not and cesql."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keventing import filters as filters_module
from keventing.filters import (
    FilterError,
    compile_trigger_filter,
    string_form,
    validate_attributes_filter,
    validate_filters,
)

EVENT: dict[str, object] = {
    "specversion": "1.0",
    "id": "1",
    "type": "com.example.order.created",
    "source": "https://shop.example.com/orders",
    "myext": "blue",
}


def matches(filters: list[dict[str, Any]], event: dict[str, object] = EVENT) -> bool:
    return compile_trigger_filter(None, filters)(event)


def problems(filters: Any) -> str:
    with pytest.raises(FilterError) as caught:
        validate_filters(filters)
    return str(caught.value)


# --- exact / prefix / suffix --------------------------------------------------------------------------------

SINGLE_ATTRIBUTE = [
    ("exact", "com.example.order.created", "com.example.order"),
    ("prefix", "com.example.", "org.example."),
    ("suffix", ".created", ".deleted"),
]


@pytest.mark.parametrize(("dialect", "hit", "miss"), SINGLE_ATTRIBUTE)
def test_single_attribute_filters_match_only_the_expected_value(dialect: str, hit: str, miss: str) -> None:
    assert matches([{dialect: {"type": hit}}]) is True
    assert matches([{dialect: {"type": miss}}]) is False


@pytest.mark.parametrize(("dialect", "hit", "miss"), SINGLE_ATTRIBUTE)
def test_single_attribute_filters_are_case_sensitive(dialect: str, hit: str, miss: str) -> None:
    assert matches([{dialect: {"type": hit.upper()}}]) is False


@pytest.mark.parametrize("dialect", ["exact", "prefix", "suffix"])
def test_single_attribute_filters_never_match_a_missing_attribute(dialect: str) -> None:
    assert matches([{dialect: {"subject": "x"}}]) is False


def test_single_attribute_filters_match_extension_attributes() -> None:
    assert matches([{"exact": {"myext": "blue"}}, {"prefix": {"myext": "bl"}}, {"suffix": {"myext": "ue"}}])


@pytest.mark.parametrize(
    ("value", "text"),
    [(42, "42"), (True, "true"), (False, "false"), (-7, "-7"), (3_000_000_000, "3000000000")],
)
def test_non_string_attribute_values_compare_by_their_string_form(value: object, text: str) -> None:
    event = {**EVENT, "count": value}
    assert matches([{"exact": {"count": text}}], event) is True
    assert matches([{"prefix": {"count": text[:1]}}, {"suffix": {"count": text[-1:]}}], event) is True
    assert string_form(value) == text


@pytest.mark.parametrize("dialect", ["exact", "prefix", "suffix"])
def test_single_attribute_filter_rejects_empty_value(dialect: str) -> None:
    message = problems([{"exact": {"type": "x"}}, {dialect: {"type": ""}}])
    assert f"spec.filters[1].{dialect}.type: " in message
    assert "must not be empty" in message and "EXISTS type" in message


def test_prefix_filter_rejects_empty_value() -> None:
    assert "spec.filters[0].prefix.source: prefix must not be empty" in problems([{"prefix": {"source": ""}}])


def test_exact_filter_must_have_exactly_one_attribute() -> None:
    message = problems([{"exact": {"type": "a"}}, {"exact": {"type": "a", "source": "b"}}])
    assert "spec.filters[1].exact: must have exactly one attribute, got 2 (type, source)" in message
    assert "spec.filters[0].exact: must have exactly one attribute, got none" in problems([{"exact": {}}])


def test_single_attribute_filter_rejects_empty_or_invalid_attribute_names() -> None:
    assert "spec.filters[0].suffix: attribute name must be a non-empty string" in problems(
        [{"suffix": {"": "x"}}]
    )
    assert "spec.filters[0].exact.Type: invalid attribute name 'Type'" in problems([{"exact": {"Type": "x"}}])


def test_single_attribute_filter_rejects_non_string_values() -> None:
    assert "spec.filters[0].exact.seq: value must be a string, got a int" in problems([{"exact": {"seq": 5}}])


# --- all / any / not ------------------------------------------------------------------------------------------

YES = {"exact": {"myext": "blue"}}
NO = {"exact": {"myext": "red"}}


def test_all_matches_when_every_filter_matches() -> None:
    assert matches([{"all": [YES, YES, YES]}]) is True
    assert matches([{"all": [YES, NO, YES]}]) is False


def test_any_matches_when_at_least_one_filter_matches() -> None:
    assert matches([{"any": [NO, NO, YES]}]) is True
    assert matches([{"any": [NO, NO]}]) is False


def test_not_negates_its_filter_including_a_missing_attribute() -> None:
    assert matches([{"not": NO}]) is True
    assert matches([{"not": YES}]) is False
    assert matches([{"not": {"exact": {"subject": "x"}}}]) is True  # Knative: a failed match negates to pass


def test_empty_all_and_any_filter_nothing_like_in_knative() -> None:
    assert matches([{"all": []}]) is True
    assert matches([{"any": []}]) is True
    # An empty list is neutral: dropped from its parent list, and still neutral under `not`.
    assert matches([{"not": {"any": []}}]) is True
    assert matches([{"any": [NO, {"all": []}]}]) is False
    assert matches([{"all": [NO, {"any": []}]}]) is False


def test_all_any_and_not_nest_to_any_depth() -> None:
    nested: dict[str, Any] = YES
    for depth in range(60):
        nested = {"not": {"not": {"all": [{"any": [NO, nested]}]}}} if depth % 2 else {"all": [nested, YES]}
    assert matches([nested]) is True
    assert matches([{"not": nested}]) is False


def test_filter_list_entries_are_anded() -> None:
    assert matches([YES, {"prefix": {"type": "com."}}]) is True
    assert matches([YES, {"prefix": {"type": "org."}}]) is False


# --- cesql -----------------------------------------------------------------------------------------------------


def test_cesql_filter_matches_when_the_expression_is_true() -> None:
    assert matches([{"cesql": "type LIKE 'com.example.%' AND myext IN ('blue', 'green')"}]) is True
    assert matches([{"cesql": "source LIKE 'http://%'"}]) is False


def test_cesql_filter_does_not_match_when_evaluation_errors() -> None:
    assert matches([{"cesql": "subject = 'x' OR TRUE"}]) is False  # missing attribute
    assert matches([{"cesql": "NOT (INT(myext) = 1)"}]) is False  # cast error
    assert matches([{"cesql": "type"}]) is False  # a String that is not a Boolean


def test_cesql_filter_with_a_parse_error_is_rejected_naming_the_path() -> None:
    message = problems([YES, {"all": [{"cesql": "type = = 'x'"}]}])
    assert (
        "spec.filters[1].all[0].cesql: invalid CESQL expression \"type = = 'x'\": unexpected '='" in message
    )


def test_cesql_filter_rejects_an_empty_expression() -> None:
    assert "spec.filters[0].cesql: expression must not be empty" in problems([{"cesql": "  "}])


# --- validation of the filter structure ----------------------------------------------------------------------


def test_filter_entry_must_have_exactly_one_dialect() -> None:
    message = problems([{"exact": {"type": "a"}, "prefix": {"source": "b"}}])
    assert "spec.filters[0]: has 2 dialects (exact, prefix) but a filter takes exactly one" in message
    assert "spec.filters[0]: empty filter; set exactly one of exact, prefix" in problems([{}])


def test_unknown_filter_keys_are_errors_with_a_suggestion() -> None:
    assert "spec.filters[0].sql: unknown filter dialect; did you mean 'cesql'?" in problems([{"sql": "x"}])
    assert "spec.filters[0].attributes: unknown filter dialect; legacy" in problems([{"attributes": {}}])


def test_nested_validation_errors_carry_the_full_field_path() -> None:
    bad = [{"any": [YES, {"not": {"all": [YES, {"suffix": {"type": "a", "id": "b"}}]}}]}]
    assert "spec.filters[0].any[1].not.all[1].suffix: must have exactly one attribute" in problems(bad)


def test_structural_type_errors_say_what_was_expected() -> None:
    assert "spec.filters: must be a list of filter objects, got an object" in problems({"exact": {}})
    assert "spec.filters[0].all: must be a list of filters, got an object" in problems([{"all": YES}])
    assert "spec.filters[0].not: must be a single filter object, got a list" in problems([{"not": [YES]}])
    assert "spec.filters[0]: must be a filter object" in problems(["type=x"])


def test_validation_reports_every_problem_at_once() -> None:
    with pytest.raises(FilterError) as caught:
        validate_filters([{"exact": {}}, {"nope": 1}, {"cesql": "("}], path="spec.subscriber.filters")
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "spec.subscriber.filters[0].exact",
        "spec.subscriber.filters[1].nope",
        "spec.subscriber.filters[2].cesql",
    ]


# --- legacy attributes filter ----------------------------------------------------------------------------------


def test_attributes_filter_requires_every_listed_attribute_to_match() -> None:
    compiled = compile_trigger_filter({"type": "com.example.order.created", "myext": "blue"}, None)
    assert compiled(EVENT) is True
    assert compiled({**EVENT, "myext": "red"}) is False


def test_attributes_filter_empty_value_matches_any_value_of_an_existing_attribute() -> None:
    assert compile_trigger_filter({"myext": ""}, None)(EVENT) is True
    assert compile_trigger_filter({"subject": ""}, None)(EVENT) is False
    assert compile_trigger_filter({"myext": "", "type": ""}, None)(EVENT) is True


def test_attributes_filter_compares_non_string_values_by_string_form() -> None:
    assert compile_trigger_filter({"flag": "true", "n": "1"}, None)({"flag": True, "n": 1}) is True


def test_attributes_filter_validation_names_the_attribute() -> None:
    with pytest.raises(FilterError, match=r"spec\.filter\.attributes\.Type: invalid attribute name"):
        validate_attributes_filter({"Type": "x"})
    with pytest.raises(FilterError, match=r"spec\.filter\.attributes\.seq: value must be a string"):
        validate_attributes_filter({"seq": 1})  # type: ignore[dict-item]


def test_filters_replace_attributes_and_no_filter_matches_everything() -> None:
    assert compile_trigger_filter({"type": "nope"}, [YES])(EVENT) is True
    assert compile_trigger_filter({"type": "nope"}, [])(EVENT) is False  # an empty list is "not present"
    assert compile_trigger_filter(None, None)({}) is True
    assert compile_trigger_filter({}, [])({}) is True


def test_compiled_filters_do_not_validate_again(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_trigger_filter(None, [{"cesql": "myext = 'blue'"}, {"any": [YES, NO]}])

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluation must not validate")

    monkeypatch.setattr(filters_module.dialects, "validate_filters", fail)
    monkeypatch.setattr(filters_module.validation, "compile_expression", fail)
    assert compiled(EVENT) is True


# --- properties ----------------------------------------------------------------------------------------------------

_names = st.sampled_from(["type", "source", "myext"])
_values = st.text("ab.", min_size=1, max_size=3)
_leaves = st.one_of(
    st.builds(lambda n, v: {"exact": {n: v}}, _names, _values),
    st.builds(lambda n, v: {"prefix": {n: v}}, _names, _values),
    st.builds(lambda n, v: {"suffix": {n: v}}, _names, _values),
    st.builds(lambda n, v: {"cesql": f"{n} = '{v}'"}, _names, _values),
)
_filters = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda fs: {"all": fs}),
        st.lists(inner, max_size=3).map(lambda fs: {"any": fs}),
        inner.map(lambda f: {"not": f}),
    ),
    max_leaves=10,
)
_events = st.fixed_dictionaries(
    {},
    optional={
        "type": _values,
        "source": _values,
        "myext": st.one_of(_values, st.booleans(), st.integers(-3, 3)),
    },
)


def _reference(entry: dict[str, Any], event: dict[str, object]) -> bool | None:
    """A direct reading of the Knative semantics; None is a neutral (empty) filter."""
    ((dialect, value),) = entry.items()
    if dialect in ("exact", "prefix", "suffix", "cesql"):
        if dialect == "cesql":
            name, _, quoted = value.partition(" = ")
            dialect, value = "exact", {name: quoted.strip("'")}
        ((name, expected),) = value.items()
        if name not in event:
            return False
        actual = string_form(event[name])
        return {"exact": actual == expected, "prefix": actual.startswith(expected)}.get(
            dialect, actual.endswith(expected)
        )
    if dialect == "not":
        inner = _reference(value, event)
        return None if inner is None else not inner
    results = [r for r in (_reference(f, event) for f in value) if r is not None]
    if not results:
        return None
    return all(results) if dialect == "all" else any(results)


@given(_filters, _events)
def test_compiled_filters_agree_with_a_reference_interpretation(
    entry: dict[str, Any], event: dict[str, object]
) -> None:
    expected = _reference(entry, event)
    assert matches([entry], event) is (True if expected is None else expected)


@given(_filters, _events)
def test_double_negation_is_the_identity(entry: dict[str, Any], event: dict[str, object]) -> None:
    assert matches([{"not": {"not": entry}}], event) is matches([entry], event)


@given(_filters, _filters, _events)
def test_de_morgan_holds_for_all_and_any(
    f: dict[str, Any], g: dict[str, Any], event: dict[str, object]
) -> None:
    assert matches([{"not": {"all": [f, g]}}], event) is matches([{"any": [{"not": f}, {"not": g}]}], event)
    assert matches([{"not": {"any": [f, g]}}], event) is matches([{"all": [{"not": f}, {"not": g}]}], event)


@given(st.text("ab%_.", min_size=1, max_size=4), _events)
def test_prefix_filter_equals_its_cesql_like_recreation(prefix: str, event: dict[str, object]) -> None:
    pattern = prefix.replace("%", "\\%").replace("_", "\\_") + "%"
    assert matches([{"prefix": {"myext": prefix}}], event) is matches(
        [{"cesql": f"myext LIKE '{pattern}'"}], event
    )
