"""The official CESQL v1 TCK (cloudevents/spec, folder cesql/cesql_tck), every case, unmodified.

The kit is test data that stays out of this repository. It is read from ``$CESQL_TCK_DIR``, by default
``<repo>/../shared/cesql_tck``. Without it the test skips, except in CI (``CI=true``) where it fails.

Each case is checked more strictly than the kit's own runner: the value must match in type and content
even when an error is expected, the error list must hold exactly the expected kind, and the fast filter
predicate (:meth:`Expression.matches`) must agree with the full evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from keventing.filters.cesql import CESQLParseError, compile_expression, evaluate
from keventing.filters.cesql.runtime import cast_bool

TCK_DIR = Path(os.environ.get("CESQL_TCK_DIR") or Path(__file__).parents[2] / ".." / "shared" / "cesql_tck")
WHERE_FROM = (
    "the CESQL TCK comes from the public cloudevents/spec repository, folder cesql/cesql_tck; "
    "put its YAML files in ../shared/cesql_tck or point CESQL_TCK_DIR at them"
)

# Any valid event will do when a case gives no `event` (README: "any valid event can be passed"); it
# deliberately has no extensions, because cases rely on e.g. `myext` being absent.
DEFAULT_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "tck-event",
    "source": "https://example.com/tck",
    "type": "com.example.tck",
    "subject": "tck",
    "time": "2018-04-26T14:48:09Z",
    "datacontenttype": "application/json",
    "dataschema": "https://example.com/schema",
}


class _TckLoader(yaml.SafeLoader):
    """Reads the kit the way its reference runner does.

    ``expression`` and ``name`` are text even when they look like YAML booleans or numbers (``TRUE``,
    ``-10``), and events are "serialized in JSON format" (README), so timestamps stay strings.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        for key, value in node.value:
            if key.value in ("expression", "name") and isinstance(value, yaml.ScalarNode):
                mapping[key.value] = value.value
        return mapping


_TckLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _cases() -> list[Any]:
    if not TCK_DIR.is_dir():
        return [pytest.param(None, id="tck-missing")]
    params = []
    for path in sorted(TCK_DIR.glob("*.yaml")):
        suite = yaml.load(path.read_text(encoding="utf-8"), Loader=_TckLoader)  # noqa: S506
        for case in suite["tests"]:
            params.append(pytest.param(case, id=f"{path.name}:{case['name']}"))
    return params or [pytest.param(None, id="tck-empty")]


def _attributes(case: dict[str, Any]) -> dict[str, Any]:
    event = dict(case["event"]) if case.get("event") else dict(DEFAULT_EVENT)
    for data_field in ("data", "data_base64"):
        event.pop(data_field, None)
    event.update(case.get("eventOverrides") or {})
    return event


def _same(actual: object, expected: object) -> bool:
    # bool is an int in Python: compare types too, so `true` never passes for `1`.
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("case", _cases())
def test_tck_case(case: dict[str, Any] | None) -> None:
    if case is None:
        pytest.fail(f"CESQL TCK not found at {TCK_DIR.resolve()}: {WHERE_FROM}")

    expression_text: str = case["expression"]
    attributes = _attributes(case)
    expected_error = case.get("error")

    if expected_error == "parse":
        with pytest.raises(CESQLParseError):
            compile_expression(expression_text)
        result = evaluate(expression_text, attributes)
        assert [e.kind for e in result.errors] == ["parse"]
        if "result" in case:
            assert _same(result.value, case["result"]), result
        return

    expression = compile_expression(expression_text)
    result = expression.evaluate(attributes)
    if expected_error is None:
        assert result.errors == (), result
    else:
        assert result.errors, f"expected a {expected_error} error, got {result}"
        assert {e.kind for e in result.errors} == {expected_error}, result
    if "result" in case:
        assert _same(result.value, case["result"]), f"expected {case['result']!r}, got {result}"

    as_boolean, cast_error = cast_bool(result.value)
    assert expression.matches(attributes) is (not result.errors and cast_error is None and as_boolean)
