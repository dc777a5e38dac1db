"""CESQL values, types, errors and the casts between types (spec sections 3.1, 3.3 and 3.7).

Values are plain Python objects: ``str`` (String), ``int`` (Integer, always within 32 bits) and ``bool``
(Boolean). ``bool`` is a subclass of ``int`` in Python, so every type test here uses ``type(v) is ...``.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

Value = str | int | bool


class Type(enum.Enum):
    """Static type of a sub-expression. ANY is a context attribute, whose type is only known per event."""

    STRING = "String"
    INTEGER = "Integer"
    BOOLEAN = "Boolean"
    ANY = "Any"


# Spec 3.1 zero values. ANY falls back to Boolean: spec 3.2 says to assume Boolean when the return type of
# a sub-expression cannot be determined.
ZERO: dict[Type, Value] = {Type.STRING: "", Type.INTEGER: 0, Type.BOOLEAN: False, Type.ANY: False}
PYTHON_TYPE: dict[Type, type] = {Type.STRING: str, Type.INTEGER: int, Type.BOOLEAN: bool}


def type_of(value: Value) -> Type:
    t = type(value)
    return Type.STRING if t is str else Type.BOOLEAN if t is bool else Type.INTEGER


class ErrorKind(enum.StrEnum):
    """The error types every CESQL engine must support (spec 3.3); values are the TCK's names."""

    PARSE = "parse"
    MATH = "math"
    CAST = "cast"
    MISSING_ATTRIBUTE = "missingAttribute"
    MISSING_FUNCTION = "missingFunction"
    FUNCTION_EVALUATION = "functionEvaluation"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True)
class EvaluationError:
    """One entry of the error list an evaluation returns next to its value."""

    kind: ErrorKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of evaluating an expression: the value (always defined, CESQL is total) and the errors."""

    value: Value
    errors: tuple[EvaluationError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


class Fail(Exception):
    """Internal control flow: a sub-expression produced errors.

    ``origin`` is the token of the node that raised it. When that node is the root, ``value`` is the
    result of the whole expression (e.g. ``NOT 10`` is ``true`` plus a cast error); otherwise an enclosing
    operator saw a failed operand and the expression yields the zero value of the root's type.
    """

    __slots__ = ("value", "errors", "origin")

    def __init__(self, value: Value, errors: tuple[EvaluationError, ...], origin: object | None) -> None:
        self.value = value
        self.errors = errors
        self.origin = origin


def short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rfc3339(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if moment.utcoffset() == timedelta(0) and text.endswith("+00:00") else text


def normalize(value: object) -> Value:
    """Map an attribute value onto a CESQL value; anything that is not a CESQL primitive becomes a String
    (spec 3.2), using the CloudEvents canonical string form."""
    t = type(value)
    if t is str or t is bool:
        return value  # type: ignore[return-value]
    if t is int:
        return value if INT_MIN <= value <= INT_MAX else str(value)  # type: ignore[operator,return-value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value) if INT_MIN <= value <= INT_MAX else str(int(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return rfc3339(value)
    return str(value)


def to_str(value: Value) -> str:
    """Integer and Boolean to String never fail (spec 3.7)."""
    t = type(value)
    if t is str:
        return value  # type: ignore[return-value]
    if t is bool:
        return "true" if value else "false"
    return str(value)


_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def cast_str(value: Value) -> tuple[str, EvaluationError | None]:
    return to_str(value), None


def cast_int(value: Value) -> tuple[int, EvaluationError | None]:
    """String to Integer: optional sign and base-10 digits only, within 32 bits; else 0 and a cast error."""
    t = type(value)
    if t is int:
        return value, None  # type: ignore[return-value]
    if t is bool:
        return (1 if value else 0), None
    if _INTEGER.fullmatch(value):  # type: ignore[arg-type]
        number = int(value)
        if INT_MIN <= number <= INT_MAX:
            return number, None
        return 0, EvaluationError(
            ErrorKind.CAST, f"String {short(value)} is outside the 32-bit Integer range"
        )
    return 0, EvaluationError(ErrorKind.CAST, f"cannot cast String {short(value)} to Integer")


def cast_bool(value: Value) -> tuple[bool, EvaluationError | None]:
    """Implicit cast to Boolean: only the strings "true"/"false" (any case) convert.

    An Integer operand is a cast error here even though ``BOOL(x)`` accepts it: the TCK requires
    ``NOT 10`` to yield ``true`` with a cast error (see ``functions.bool_function`` for the explicit cast).
    """
    t = type(value)
    if t is bool:
        return value, None  # type: ignore[return-value]
    if t is str:
        lowered = value.lower()  # type: ignore[union-attr]
        if lowered == "true":
            return True, None
        if lowered == "false":
            return False, None
        return False, EvaluationError(ErrorKind.CAST, f"cannot cast String {short(value)} to Boolean")
    return False, EvaluationError(
        ErrorKind.CAST, f"cannot implicitly cast Integer {value} to Boolean; use BOOL(x) to test for non-zero"
    )


CAST: dict[Type, Callable[[Value], tuple[Value, EvaluationError | None]]] = {
    Type.STRING: cast_str,
    Type.INTEGER: cast_int,
    Type.BOOLEAN: cast_bool,
}


def clamp(number: int) -> int:
    return INT_MAX if number > INT_MAX else INT_MIN if number < INT_MIN else number


def overflow(operation: str) -> EvaluationError:
    return EvaluationError(ErrorKind.MATH, f"integer overflow in {operation}; result clamped to 32 bits")
