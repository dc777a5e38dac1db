"""Compile validated Trigger filters into plain predicates over an event's attributes.

Semantics follow Knative Eventing (``pkg/eventfilter``):

* legacy ``filter.attributes``: every listed attribute must exist; ``""`` matches any value; otherwise the
  value must be equal;
* ``exact`` / ``prefix`` / ``suffix``: one attribute, case-sensitive; a missing attribute does not match;
* ``all`` / ``any`` / ``not``: composition; ``cesql``: the expression must evaluate to true without errors.

Attribute values that are not strings are compared by their CloudEvents string form (``true``/``false``
for booleans). A filter that filters nothing (an empty ``all`` or ``any``) is *neutral*, as in Knative: it is
left out of an enclosing list, ``not`` of it is still neutral, and a Trigger made only of neutral filters
matches every event. Everything is compiled once; a compiled filter does no validation or parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .cesql import compile_expression
from .cesql.runtime import normalize, to_str
from .validation import DIALECTS, validate_attributes_filter, validate_filters

Attributes = Mapping[str, object]
Filter = Callable[[Attributes], bool]


def string_form(value: object) -> str:
    """How a non-string attribute value compares with a filter's string (its CloudEvents string form)."""
    return value if type(value) is str else to_str(normalize(value))  # type: ignore[return-value]


def match_all(attributes: Attributes) -> bool:
    return True


def _exact(name: str, expected: str) -> Filter:
    def exact(a: Attributes) -> bool:
        v = a.get(name)
        if type(v) is str:
            return v == expected
        return v is not None and string_form(v) == expected

    return exact


def _prefix(name: str, prefix: str) -> Filter:
    def has_prefix(a: Attributes) -> bool:
        v = a.get(name)
        if type(v) is str:
            return v.startswith(prefix)
        return v is not None and string_form(v).startswith(prefix)

    return has_prefix


def _suffix(name: str, suffix: str) -> Filter:
    def has_suffix(a: Attributes) -> bool:
        v = a.get(name)
        if type(v) is str:
            return v.endswith(suffix)
        return v is not None and string_form(v).endswith(suffix)

    return has_suffix


def all_of(filters: Sequence[Filter]) -> Filter:
    if len(filters) == 1:
        return filters[0]
    if len(filters) == 2:
        f, g = filters
        return lambda a: f(a) and g(a)
    fs = tuple(filters)

    def all_match(a: Attributes) -> bool:
        for f in fs:
            if not f(a):
                return False
        return True

    return all_match


def any_of(filters: Sequence[Filter]) -> Filter:
    if len(filters) == 1:
        return filters[0]
    if len(filters) == 2:
        f, g = filters
        return lambda a: f(a) or g(a)
    fs = tuple(filters)

    def any_match(a: Attributes) -> bool:
        for f in fs:
            if f(a):
                return True
        return False

    return any_match


def negation(f: Filter) -> Filter:
    return lambda a: not f(a)


def _compile_list(
    entries: Sequence[Mapping[str, Any]], combine: Callable[[Sequence[Filter]], Filter]
) -> Filter | None:
    compiled = [f for f in map(_compile_entry, entries) if f is not None]
    return combine(compiled) if compiled else None


def _compile_entry(entry: Mapping[str, Any]) -> Filter | None:
    """One validated filter entry, or None when it is neutral."""
    (dialect,) = (key for key in entry if key in DIALECTS)
    value = entry[dialect]
    if dialect in ("exact", "prefix", "suffix"):
        ((name, expected),) = value.items()
        return {"exact": _exact, "prefix": _prefix, "suffix": _suffix}[dialect](name, expected)
    if dialect == "all":
        return _compile_list(value, all_of)
    if dialect == "any":
        return _compile_list(value, any_of)
    if dialect == "not":
        inner = _compile_entry(value)
        return None if inner is None else negation(inner)
    return compile_expression(value).matches


def _attributes_filter(attributes: Mapping[str, str]) -> Filter:
    items = tuple(attributes.items())
    if len(items) == 1:
        ((name, expected),) = items
        if expected == "":
            return lambda a: a.get(name) is not None
        return _exact(name, expected)

    def attributes_match(a: Attributes) -> bool:
        for name, expected in items:
            v = a.get(name)
            if v is None:
                return False
            if expected and (v if type(v) is str else string_form(v)) != expected:
                return False
        return True

    return attributes_match


def compile_trigger_filter(
    attributes: Mapping[str, str] | None, filters: Sequence[Mapping[str, Any]] | None
) -> Filter:
    """Validate and compile a Trigger's filters (``spec.filter.attributes`` and ``spec.filters``).

    A non-empty ``filters`` list takes precedence over ``attributes`` and its entries are ANDed; with no
    filter at all every event matches. Raises :class:`FilterError` for invalid input.
    """
    validate_attributes_filter(attributes)
    validate_filters(filters)
    if filters:
        return _compile_list(filters, all_of) or match_all
    if attributes:
        return _attributes_filter(attributes)
    return match_all
