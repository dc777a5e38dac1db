"""Built-in CESQL functions (spec 3.5) and their dispatch by name and arity.

Every function is total: on bad input it returns a defined value and signals the error by raising
:class:`FunctionFailure`, which the compiled call turns into an entry of the error list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .runtime import (
    INT_MAX,
    INT_MIN,
    ErrorKind,
    EvaluationError,
    Type,
    Value,
    cast_bool,
    cast_int,
    to_str,
)


class FunctionFailure(Exception):
    """Raised by a function implementation: ``value`` is still the function's result (spec 3.5.3)."""

    __slots__ = ("value", "error")

    def __init__(self, value: Value, error: EvaluationError) -> None:
        self.value = value
        self.error = error


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    params: tuple[Type, ...]  # fixed leading parameters
    variadic: Type | None  # type of the repeated trailing parameter, None when the arity is fixed
    returns: Type
    impl: Callable[..., Value]


def _evaluation_error(name: str, message: str, value: Value) -> FunctionFailure:
    return FunctionFailure(value, EvaluationError(ErrorKind.FUNCTION_EVALUATION, f"{name}: {message}"))


# Unicode White_Space (what TRIM removes per spec). Python's str.strip() would also drop U+001C..U+001F.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _left(s: str, n: int) -> str:
    if n < 0:
        raise _evaluation_error("LEFT", f"length {n} is negative", s)
    return s[:n]


def _right(s: str, n: int) -> str:
    if n < 0:
        raise _evaluation_error("RIGHT", f"length {n} is negative", s)
    return s[len(s) - n :] if n < len(s) else s


def _start(name: str, s: str, pos: int) -> int:
    """0-based start index for a 1-based (or from-the-end negative) position; -1 for pos == 0."""
    size = len(s)
    if pos > size or pos < -size:
        raise _evaluation_error(name, f"position {pos} is outside a string of length {size}", "")
    if pos == 0:
        return -1
    return pos - 1 if pos > 0 else size + pos


def _substring(s: str, pos: int) -> str:
    start = _start("SUBSTRING", s, pos)
    return "" if start < 0 else s[start:]


def _substring_len(s: str, pos: int, length: int) -> str:
    start = _start("SUBSTRING", s, pos)
    if length < 0:
        raise _evaluation_error("SUBSTRING", f"length {length} is negative", "")
    return "" if start < 0 else s[start : start + length]


def _abs(x: int) -> int:
    if x == INT_MIN:
        # Spec 3.5.2 fixes this case: the largest Integer plus a math error.
        raise FunctionFailure(INT_MAX, EvaluationError(ErrorKind.MATH, "ABS(-2147483648) overflows 32 bits"))
    return -x if x < 0 else x


def _concat_ws(delimiter: str, *parts: str) -> str:
    return delimiter.join(parts)


def _int(x: Value) -> int:
    value, error = cast_int(x)
    if error is not None:
        raise FunctionFailure(value, error)
    return value


def bool_function(x: Value) -> bool:
    """Explicit cast: unlike the implicit one, an Integer converts (non-zero is true), per spec 3.7."""
    if type(x) is int:
        return x != 0
    value, error = cast_bool(x)
    if error is not None:
        raise FunctionFailure(value, error)
    return value


def _is_int(x: Value) -> bool:
    return cast_int(x)[1] is None


def _is_bool(x: Value) -> bool:
    return type(x) is int or cast_bool(x)[1] is None


STR, INT, BOOL, ANY = Type.STRING, Type.INTEGER, Type.BOOLEAN, Type.ANY

BUILTINS: tuple[Function, ...] = (
    Function("LENGTH", (STR,), None, INT, len),
    Function("CONCAT", (), STR, STR, lambda *parts: "".join(parts)),
    Function("CONCAT_WS", (STR,), STR, STR, _concat_ws),
    Function("LOWER", (STR,), None, STR, str.lower),
    Function("UPPER", (STR,), None, STR, str.upper),
    Function("TRIM", (STR,), None, STR, lambda s: s.strip(_WHITESPACE)),
    Function("LEFT", (STR, INT), None, STR, _left),
    Function("RIGHT", (STR, INT), None, STR, _right),
    Function("SUBSTRING", (STR, INT), None, STR, _substring),
    Function("SUBSTRING", (STR, INT, INT), None, STR, _substring_len),
    Function("ABS", (INT,), None, INT, _abs),
    Function("INT", (ANY,), None, INT, _int),
    Function("BOOL", (ANY,), None, BOOL, bool_function),
    Function("STRING", (ANY,), None, STR, to_str),
    Function("IS_INT", (ANY,), None, BOOL, _is_int),
    Function("IS_BOOL", (ANY,), None, BOOL, _is_bool),
)

_BY_NAME: dict[str, list[Function]] = {}
for _f in BUILTINS:
    _BY_NAME.setdefault(_f.name, []).append(_f)


def resolve(name: str, arity: int) -> Function | None:
    """Overloads differ by arity (spec 3.5); a variadic overload takes any arity >= its fixed parameters."""
    overloads = _BY_NAME.get(name, ())
    for function in overloads:
        if function.variadic is None and len(function.params) == arity:
            return function
    for function in overloads:
        if function.variadic is not None and arity >= len(function.params):
            return function
    return None


def missing_function_message(name: str, arity: int) -> str:
    overloads = _BY_NAME.get(name)
    if not overloads:
        known = ", ".join(sorted(_BY_NAME))
        return f"unknown function {name}; built-in functions are: {known}"
    arities = sorted(f"{len(f.params)}+" if f.variadic is not None else str(len(f.params)) for f in overloads)
    return f"{name} takes {' or '.join(arities)} argument(s), not {arity}"


__all__ = ["BUILTINS", "Function", "FunctionFailure", "bool_function", "missing_function_message", "resolve"]
