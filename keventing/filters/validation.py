"""Validation of Trigger filters, with errors that name the offending field and say how to fix it.

Stricter than Knative's webhook where Knative silently ignores a broken entry at dispatch time (an
``exact`` filter with an empty value, an empty ``{}`` entry, an unknown key): here those are rejected up
front, so a Trigger never filters differently from what its author wrote.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .cesql import CESQLParseError, compile_expression

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
_ONE_OF = ", ".join(DIALECTS)
# Knative's rule for attribute names in filters: lowercase alphanumeric, starting with a letter.
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9]*")
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class FilterError(ValueError):
    """A Trigger filter is invalid. ``problems`` lists every finding as "<field path>: <what and how>"."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def _key(path: str, key: object) -> str:
    return f"{path}.{key}" if isinstance(key, str) and _SIMPLE_KEY.fullmatch(key) else f"{path}[{key!r}]"


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _check_attribute_name(name: object, path: str, problems: list[str]) -> bool:
    if not isinstance(name, str) or not name:
        problems.append(f"{path}: attribute name must be a non-empty string")
        return False
    if not _ATTRIBUTE_NAME.fullmatch(name):
        problems.append(
            f"{_key(path, name)}: invalid attribute name {name!r}; CloudEvents attribute names are lowercase "
            "letters and digits and must start with a letter"
        )
        return False
    return True


def _check_single_attribute(value: object, path: str, dialect: str, problems: list[str]) -> None:
    what = {"exact": "value", "prefix": "prefix", "suffix": "suffix"}[dialect]
    if not isinstance(value, Mapping):
        problems.append(f"{path}: must be a map of one attribute name to its {what}, got {_kind(value)}")
        return
    if len(value) != 1:
        got = "none" if not value else f"{len(value)} ({', '.join(map(str, value))})"
        problems.append(
            f"{path}: must have exactly one attribute, got {got}; to test several attributes, put one "
            f"{dialect} filter per attribute in the list (entries are ANDed) or inside all/any"
        )
        return
    ((name, expected),) = value.items()
    if not _check_attribute_name(name, path, problems):
        return
    if not isinstance(expected, str):
        problems.append(
            f"{_key(path, name)}: {what} must be a string, got {_kind(expected)} (quote it in YAML)"
        )
    elif not expected:
        problems.append(
            f"{_key(path, name)}: {what} must not be empty; to match any value of an existing attribute use "
            f'cesql: "EXISTS {name}"'
        )


def _check_entry(entry: object, path: str, problems: list[str]) -> None:
    if not isinstance(entry, Mapping):
        problems.append(f"{path}: must be a filter object with exactly one of {_ONE_OF}; got {_kind(entry)}")
        return
    dialects = [key for key in entry if key in DIALECTS]
    for key in entry:
        if key in DIALECTS:
            continue
        if key == "attributes":
            hint = "legacy attribute filters belong in spec.filter.attributes; here use exact"
        else:
            close = difflib.get_close_matches(str(key).lower(), DIALECTS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of {_ONE_OF}"
        problems.append(f"{_key(path, key)}: unknown filter dialect; {hint}")
    if not dialects:
        if not entry:
            problems.append(f"{path}: empty filter; set exactly one of {_ONE_OF}")
        return
    if len(dialects) > 1:
        problems.append(
            f"{path}: has {len(dialects)} dialects ({', '.join(dialects)}) but a filter takes exactly one; put "
            "each in its own list entry (entries are ANDed) or combine them with all/any"
        )
    for dialect in dialects:
        value, where = entry[dialect], f"{path}.{dialect}"
        if dialect in ("exact", "prefix", "suffix"):
            _check_single_attribute(value, where, dialect, problems)
        elif dialect in ("all", "any"):
            if _is_list(value):
                _check_list(value, where, problems)
            else:
                problems.append(f"{where}: must be a list of filters, got {_kind(value)}")
        elif dialect == "not":
            if isinstance(value, Mapping):
                _check_entry(value, where, problems)
            else:
                problems.append(
                    f"{where}: must be a single filter object, got {_kind(value)}; to negate several filters "
                    "wrap them in all or any"
                )
        else:
            _check_cesql(value, where, problems)


def _check_cesql(value: object, path: str, problems: list[str]) -> None:
    if not isinstance(value, str):
        problems.append(f"{path}: must be a CESQL expression string, got {_kind(value)}")
    elif not value.strip():
        problems.append(f"{path}: expression must not be empty; remove the entry to match every event")
    else:
        try:
            compile_expression(value)
        except CESQLParseError as exc:
            problems.append(f"{path}: invalid CESQL expression {value!r}: {exc}")


def _check_list(filters: Sequence[Any], path: str, problems: list[str]) -> None:
    for index, entry in enumerate(filters):
        _check_entry(entry, f"{path}[{index}]", problems)


def validate_filters(filters: Sequence[Mapping[str, Any]] | None, path: str = "spec.filters") -> None:
    """Validate a Subscriptions API filter list (``spec.filters``); raises :class:`FilterError`."""
    if filters is None:
        return
    problems: list[str] = []
    if _is_list(filters):
        _check_list(filters, path, problems)
    else:
        problems.append(f"{path}: must be a list of filter objects, got {_kind(filters)}")
    if problems:
        raise FilterError(problems)


def validate_attributes_filter(
    attributes: Mapping[str, str] | None, path: str = "spec.filter.attributes"
) -> None:
    """Validate a legacy ``filter.attributes`` map; raises :class:`FilterError`."""
    if attributes is None:
        return
    problems: list[str] = []
    if not isinstance(attributes, Mapping):
        problems.append(f"{path}: must be a map of attribute name to value, got {_kind(attributes)}")
    else:
        for name, expected in attributes.items():
            if _check_attribute_name(name, path, problems) and not isinstance(expected, str):
                problems.append(
                    f'{_key(path, name)}: value must be a string, got {_kind(expected)}; use "" to match any value'
                )
    if problems:
        raise FilterError(problems)
