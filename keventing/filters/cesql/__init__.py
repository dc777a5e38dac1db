"""CloudEvents SQL Expression Language (CESQL) v1.0.0: parse once, compile to closures, evaluate per event.

>>> expression = compile_expression("type LIKE 'com.example.%' AND INT(sequence) > 10")
>>> expression.matches({"type": "com.example.order", "sequence": "11"})
True
>>> expression.evaluate({"type": "com.example.order"})
Result(value=False, errors=(EvaluationError(kind=<ErrorKind.MISSING_ATTRIBUTE: 'missingAttribute'>, ...),))

Attribute values may be ``str`` (as they arrive in Kafka headers), ``int`` or ``bool``; anything else is
seen as its CloudEvents string form. See :mod:`.compiler` for how errors propagate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from .compiler import compile_tree
from .parser import CESQLParseError, parse
from .runtime import ZERO, ErrorKind, EvaluationError, Fail, Result, Type, Value, cast_bool

Attributes = Mapping[str, object]


class Expression:
    """A compiled CESQL expression. Immutable and safe to share between threads and triggers."""

    __slots__ = ("text", "type", "_fn", "_token", "matches")

    text: str
    type: Type
    #: Filter predicate (spec 1.2): true only for a Boolean-castable result with no errors.
    matches: Callable[[Attributes], bool]

    def __init__(self, text: str) -> None:
        tree = parse(text)
        try:
            compiled = compile_tree(tree)
        except CESQLParseError as exc:
            raise CESQLParseError(str(exc), text, exc.column) from None
        except RecursionError:
            raise CESQLParseError("expression is nested too deeply", text) from None
        self.text = text
        self.type = compiled.type
        self._fn = compiled.fn
        self._token = compiled.token
        self.matches = _matcher(compiled.fn, compiled.type)

    def evaluate(self, attributes: Attributes) -> Result:
        """The expression's value and error list for one event (errors never raise)."""
        try:
            return Result(self._fn(attributes))
        except Fail as failure:
            value = failure.value if failure.origin is self._token else ZERO[self.type]
            return Result(value, failure.errors)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _matcher(fn: Callable[[Attributes], Value], type_: Type) -> Callable[[Attributes], bool]:
    # A plain closure rather than a method: filters call it per event, and this skips method binding.
    if type_ is Type.BOOLEAN:

        def matches_boolean(attributes: Attributes) -> bool:
            try:
                return fn(attributes)  # type: ignore[return-value]
            except Fail:
                return False

        return matches_boolean

    def matches(attributes: Attributes) -> bool:
        try:
            value = fn(attributes)
        except Fail:
            return False
        if type(value) is bool:
            return value
        result, error = cast_bool(value)
        return result and error is None

    return matches


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> Expression:
    """Parse and compile ``text`` (cached by text); raises :class:`CESQLParseError` if it is not CESQL."""
    return Expression(text)


def evaluate(text: str, attributes: Attributes) -> Result:
    """One-shot evaluation. A parse error is reported like any other error, with the value ``false``."""
    try:
        expression = compile_expression(text)
    except CESQLParseError as exc:
        return Result(False, (EvaluationError(ErrorKind.PARSE, str(exc)),))
    return expression.evaluate(attributes)


__all__ = [
    "Attributes",
    "CESQLParseError",
    "ErrorKind",
    "EvaluationError",
    "Expression",
    "Result",
    "Type",
    "compile_expression",
    "evaluate",
    "parse",
]
