"""Compile a CESQL syntax tree, once, into a tree of Python closures.

Each closure takes the event's attribute mapping and returns a CESQL value. Types are inferred at compile
time, so casts are only emitted where an operand's static type differs from what the operator needs;
constant sub-expressions are folded; and the common filter shapes (``attr = 'x'``, ``attr LIKE 'p%'``,
``attr IN (...)``) look the attribute up inline. Evaluating an event never touches the syntax tree.

Error semantics (spec 3.3 and 4.1), chosen to satisfy the TCK exactly:

* the operator or function that hits an error (failed cast, division by zero, overflow, bad argument)
  still produces its value: the failed cast yields the target type's zero value and the operator carries
  on, so ``NOT 10`` is ``true`` with a cast error and ``ABS(-2147483648)`` is 2147483647 with a math error;
* an operator whose *operand* failed yields its own zero value and evaluation stops ("fail fast", which
  spec 1.2 recommends for filtering), so ``true AND (1 != 1 / 0)`` is ``false`` with a math error and
  ``missing / 0`` is 0 with only a missing-attribute error.

Internally a failure is a :class:`~.runtime.Fail` exception; the successful path pays nothing for it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .functions import Function, FunctionFailure, missing_function_message, resolve
from .like import compile_like
from .nodes import Binary, Call, Exists, Identifier, In, Like, Literal, Negate, Node, Not
from .parser import CESQLParseError
from .runtime import (
    CAST,
    INT_MAX,
    INT_MIN,
    PYTHON_TYPE,
    ZERO,
    ErrorKind,
    EvaluationError,
    Fail,
    Type,
    Value,
    cast_bool,
    cast_int,
    clamp,
    normalize,
    overflow,
    to_str,
    type_of,
)

Attributes = Mapping[str, object]
Fn = Callable[[Attributes], Any]
_EMPTY: Attributes = MappingProxyType({})
STRING, INTEGER, BOOLEAN, ANY = Type.STRING, Type.INTEGER, Type.BOOLEAN, Type.ANY


@dataclass(frozen=True, slots=True)
class Compiled:
    fn: Fn
    type: Type
    token: object  # identity of the node, matched against Fail.origin at the root
    const: bool = False
    name: str | None = None  # attribute name when the node is a bare identifier (enables inline lookups)
    missing: tuple[EvaluationError, ...] = ()  # the error a bare identifier raises when absent


def _const(value: Value, token: object | None = None) -> Compiled:
    def fn(a: Attributes) -> Value:
        return value

    return Compiled(fn, type_of(value), token if token is not None else object(), const=True)


def _fold(compiled: Compiled) -> Compiled:
    """Evaluate a node whose operands are all constant; keep it as code if it errors (reported per event)."""
    try:
        value = compiled.fn(_EMPTY)
    except Fail:
        return compiled
    return _const(value, compiled.token)


def _finish(value: Value, errors: list[EvaluationError], token: object) -> Value:
    if errors:
        raise Fail(value, tuple(errors), token)
    return value


# --- arithmetic kernels: (x, y) -> (value, error or None), both operands already Integers -----------------

_DIVISION_BY_ZERO = EvaluationError(ErrorKind.MATH, "division by zero")
_MODULO_BY_ZERO = EvaluationError(ErrorKind.MATH, "modulo by zero")


def _checked(result: int, what: str) -> tuple[int, EvaluationError | None]:
    if INT_MIN <= result <= INT_MAX:
        return result, None
    return clamp(result), overflow(what)


def _add(x: int, y: int) -> tuple[int, EvaluationError | None]:
    return _checked(x + y, "addition")


def _sub(x: int, y: int) -> tuple[int, EvaluationError | None]:
    return _checked(x - y, "subtraction")


def _mul(x: int, y: int) -> tuple[int, EvaluationError | None]:
    return _checked(x * y, "multiplication")


def _div(x: int, y: int) -> tuple[int, EvaluationError | None]:
    if y == 0:
        return 0, _DIVISION_BY_ZERO
    quotient = abs(x) // abs(y)  # truncated division: round towards zero, unlike Python's //
    return _checked(-quotient if (x < 0) != (y < 0) else quotient, "division")


def _mod(x: int, y: int) -> tuple[int, EvaluationError | None]:
    if y == 0:
        return 0, _MODULO_BY_ZERO
    remainder = abs(x) % abs(y)  # the remainder takes the sign of the dividend
    return (-remainder if x < 0 else remainder), None


_ARITHMETIC = {"+": _add, "-": _sub, "*": _mul, "/": _div, "%": _mod}
_ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class _Compiler:
    def compile(self, node: Node) -> Compiled:
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Identifier):
            return self.identifier(node)
        if isinstance(node, Exists):
            return self.exists(node)
        if isinstance(node, Not):
            return self.not_(node)
        if isinstance(node, Negate):
            return self.negate(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Like):
            return self.like(node)
        if isinstance(node, In):
            return self.in_(node)
        if isinstance(node, Call):
            return self.call(node)
        raise TypeError(f"unknown CESQL node {node!r}")

    # --- leaves ------------------------------------------------------------------------------------------

    def literal(self, node: Literal) -> Compiled:
        value = node.value
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            raise CESQLParseError(f"integer literal {value} is outside the 32-bit range", "")
        return _const(value)

    def identifier(self, node: Identifier) -> Compiled:
        name, token = node.name, object()
        missing = (
            EvaluationError(ErrorKind.MISSING_ATTRIBUTE, f"attribute {name!r} is not present on the event"),
        )

        def fn(a: Attributes) -> Value:
            v = a.get(name)
            if type(v) is str:
                return v
            if v is None:
                raise Fail(False, missing, token)
            return normalize(v)

        return Compiled(fn, ANY, token, name=name, missing=missing)

    def exists(self, node: Exists) -> Compiled:
        name = node.name

        def fn(a: Attributes) -> bool:
            return a.get(name) is not None

        return Compiled(fn, BOOLEAN, object())

    # --- casting views -----------------------------------------------------------------------------------

    def as_string(self, c: Compiled) -> Fn:
        """The operand cast to String; that cast cannot fail, so no error bookkeeping is needed."""
        if c.type is STRING:
            return c.fn
        if c.name is not None:
            name, missing = c.name, c.missing

            def fetch(a: Attributes) -> str:
                v = a.get(name)
                if type(v) is str:
                    return v
                if v is None:
                    raise Fail(False, missing, None)
                return to_str(normalize(v))

            return fetch
        fn = c.fn
        return lambda a: to_str(fn(a))

    # --- unary operators ---------------------------------------------------------------------------------

    def not_(self, node: Not) -> Compiled:
        operand = self.compile(node.operand)
        fn, token = operand.fn, object()
        if operand.type is BOOLEAN:

            def not_bool(a: Attributes) -> bool:
                return not fn(a)

            result = Compiled(not_bool, BOOLEAN, token)
        else:

            def not_any(a: Attributes) -> bool:
                v = fn(a)
                if type(v) is bool:
                    return not v
                b, error = cast_bool(v)
                if error is None:
                    return not b
                raise Fail(not b, (error,), token)

            result = Compiled(not_any, BOOLEAN, token)
        return _fold(result) if operand.const else result

    def negate(self, node: Negate) -> Compiled:
        operand = self.compile(node.operand)
        fn, token = operand.fn, object()
        negation_overflow = overflow("negation")

        def negate(a: Attributes) -> int:
            v = fn(a)
            errors: list[EvaluationError] = []
            if type(v) is not int:
                v, error = cast_int(v)
                if error is not None:
                    errors.append(error)
            if v == INT_MIN:
                errors.append(negation_overflow)
                return _finish(INT_MAX, errors, token)  # type: ignore[return-value]
            return _finish(-v, errors, token)  # type: ignore[return-value]

        result = Compiled(negate, INTEGER, token)
        return _fold(result) if operand.const else result

    # --- binary operators --------------------------------------------------------------------------------

    def binary(self, node: Binary) -> Compiled:
        op = node.op
        if op in ("AND", "OR"):
            return self.logic_chain(node)
        left, right = self.compile(node.left), self.compile(node.right)
        if op == "XOR":
            result = self.typed_binary(left, right, BOOLEAN, BOOLEAN, operator.ne, BOOLEAN)
        elif op in ("=", "!="):
            result = self.equality(left, right, negated=op == "!=")
        elif op in _ORDERING:
            result = self.typed_binary(left, right, INTEGER, INTEGER, _ORDERING[op], BOOLEAN)
        else:
            result = self.arithmetic(left, right, _ARITHMETIC[op])
        return _fold(result) if left.const and right.const else result

    def typed_binary(
        self,
        left: Compiled,
        right: Compiled,
        lt: Type,
        rt: Type,
        op: Callable[[Any, Any], Any],
        returns: Type,
    ) -> Compiled:
        """A non-failing operator on operands cast to the fixed types ``lt`` and ``rt``."""
        lf, rf, token = left.fn, right.fn, object()
        if left.type is lt and right.type is rt:
            if right.const:
                constant = rf(_EMPTY)
                return Compiled(lambda a: op(lf(a), constant), returns, token)
            return Compiled(lambda a: op(lf(a), rf(a)), returns, token)
        pl, pr, castl, castr = PYTHON_TYPE[lt], PYTHON_TYPE[rt], CAST[lt], CAST[rt]

        def mixed(a: Attributes) -> Value:
            x, y = lf(a), rf(a)
            errors: list[EvaluationError] = []
            if type(x) is not pl:
                x, error = castl(x)
                if error is not None:
                    errors.append(error)
            if type(y) is not pr:
                y, error = castr(y)
                if error is not None:
                    errors.append(error)
            return _finish(op(x, y), errors, token)

        return Compiled(mixed, returns, token)

    def arithmetic(
        self,
        left: Compiled,
        right: Compiled,
        kernel: Callable[[int, int], tuple[int, EvaluationError | None]],
    ) -> Compiled:
        lf, rf, token = left.fn, right.fn, object()
        if left.type is INTEGER and right.type is INTEGER:

            def integers(a: Attributes) -> int:
                value, error = kernel(lf(a), rf(a))
                if error is None:
                    return value
                raise Fail(value, (error,), token)

            return Compiled(integers, INTEGER, token)

        def mixed(a: Attributes) -> int:
            x, y = lf(a), rf(a)
            errors: list[EvaluationError] = []
            if type(x) is not int:
                x, error = cast_int(x)
                if error is not None:
                    errors.append(error)
            if type(y) is not int:
                y, error = cast_int(y)
                if error is not None:
                    errors.append(error)
            value, error = kernel(x, y)
            if error is not None:
                errors.append(error)
            return _finish(value, errors, token)  # type: ignore[return-value]

        return Compiled(mixed, INTEGER, token)

    def equality(self, left: Compiled, right: Compiled, negated: bool) -> Compiled:
        """``=`` is overloaded for all three types: the right operand's type picks the overload and the
        left operand is cast to it (spec 3.7); with an attribute on the right that happens per event."""
        lf, rf, token = left.fn, right.fn, object()
        if right.type is ANY:

            def dynamic(a: Attributes) -> bool:
                x, y = lf(a), rf(a)
                if type(x) is type(y):
                    return (x == y) is not negated
                x, error = CAST[type_of(y)](x)
                result = (x == y) is not negated
                if error is None:
                    return result
                raise Fail(result, (error,), token)

            return Compiled(dynamic, BOOLEAN, token)

        target = right.type
        if target is STRING:
            # String is the common case (attributes from Kafka headers are strings) and never fails to cast.
            sf = self.as_string(left)
            if right.const:
                constant = rf(_EMPTY)
                if left.name is not None:
                    name, missing = left.name, left.missing

                    def attribute_equals(a: Attributes) -> bool:
                        v = a.get(name)
                        if type(v) is str:
                            return (v == constant) is not negated
                        if v is None:
                            raise Fail(False, missing, None)
                        return (to_str(normalize(v)) == constant) is not negated

                    return Compiled(attribute_equals, BOOLEAN, token)
                return Compiled(lambda a: (sf(a) == constant) is not negated, BOOLEAN, token)
            return Compiled(lambda a: (sf(a) == rf(a)) is not negated, BOOLEAN, token)

        if left.type is target:
            return self.typed_binary(
                left, right, target, target, operator.ne if negated else operator.eq, BOOLEAN
            )
        py, cast = PYTHON_TYPE[target], CAST[target]

        def cast_left(a: Attributes) -> bool:
            x, y = lf(a), rf(a)
            if type(x) is py:
                return (x == y) is not negated
            x, error = cast(x)
            result = (x == y) is not negated
            if error is None:
                return result
            raise Fail(result, (error,), token)

        return Compiled(cast_left, BOOLEAN, token)

    def logic_chain(self, node: Binary) -> Compiled:
        """``a AND b AND c`` (left-associative) as one flat short-circuiting closure when every operand is
        Boolean; otherwise as nested binary nodes, so per-level cast errors keep their exact semantics."""
        op = node.op
        chain: list[Node] = []
        current: Node = node
        while isinstance(current, Binary) and current.op == op:
            chain.append(current.right)
            current = current.left
        chain.append(current)
        operands = [self.compile(n) for n in reversed(chain)]
        is_and = op == "AND"
        if all(o.type is BOOLEAN for o in operands):
            result = self.flat_logic([o.fn for o in operands], is_and)
        else:
            result = operands[0]
            for operand in operands[1:]:
                result = self.logic_pair(result, operand, is_and)
        if all(o.const for o in operands):
            return _fold(result)
        return result

    def flat_logic(self, fns: list[Fn], is_and: bool) -> Compiled:
        token = object()
        if len(fns) == 2:
            f, g = fns
            fn = (lambda a: f(a) and g(a)) if is_and else (lambda a: f(a) or g(a))
        elif len(fns) == 3:
            f, g, h = fns
            fn = (lambda a: f(a) and g(a) and h(a)) if is_and else (lambda a: f(a) or g(a) or h(a))
        elif is_and:

            def fn(a: Attributes) -> bool:
                for f in fns:
                    if not f(a):
                        return False
                return True

        else:

            def fn(a: Attributes) -> bool:
                for f in fns:
                    if f(a):
                        return True
                return False

        return Compiled(fn, BOOLEAN, token)

    def logic_pair(self, left: Compiled, right: Compiled, is_and: bool) -> Compiled:
        lf, rf, token = left.fn, right.fn, object()

        def pair(a: Attributes) -> bool:
            errors: list[EvaluationError] = []
            x = lf(a)
            if type(x) is not bool:
                x, error = cast_bool(x)
                if error is not None:
                    errors.append(error)
            if x is not is_and:  # short circuit: false for AND, true for OR; the right side is not evaluated
                return _finish(x, errors, token)  # type: ignore[return-value]
            try:
                y = rf(a)
            except Fail as failure:
                if errors:
                    raise Fail(False, (*errors, *failure.errors), None) from None
                raise
            if type(y) is not bool:
                y, error = cast_bool(y)
                if error is not None:
                    errors.append(error)
            return _finish(y, errors, token)  # type: ignore[return-value]

        return Compiled(pair, BOOLEAN, token)

    # --- LIKE and IN ---------------------------------------------------------------------------------------

    def like(self, node: Like) -> Compiled:
        operand = self.compile(node.operand)
        matcher, negated, token = compile_like(node.pattern), node.negated, object()
        if operand.name is not None:
            name, missing = operand.name, operand.missing

            def attribute_like(a: Attributes) -> bool:
                v = a.get(name)
                if type(v) is not str:
                    if v is None:
                        raise Fail(False, missing, None)
                    v = to_str(normalize(v))
                return matcher(v) is not negated

            return Compiled(attribute_like, BOOLEAN, token)
        sf = self.as_string(operand)
        result = Compiled(lambda a: matcher(sf(a)) is not negated, BOOLEAN, token)
        return _fold(result) if operand.const else result

    def in_(self, node: In) -> Compiled:
        """Set membership with ``=`` semantics, casting every element to the left operand's type."""
        operand = self.compile(node.operand)
        items = [self.compile(i) for i in node.items]
        negated, token = node.negated, object()
        if all(i.const for i in items):
            result = self.in_constant(operand, [i.fn(_EMPTY) for i in items], negated, token)
        else:
            result = self.in_dynamic(operand, [i.fn for i in items], negated, token)
        return _fold(result) if operand.const and all(i.const for i in items) else result

    def in_constant(self, operand: Compiled, values: list[Value], negated: bool, token: object) -> Compiled:
        # Pre-cast the elements for each possible type of the left operand: membership is then a set lookup.
        table: dict[type, tuple[frozenset[Value], tuple[EvaluationError, ...]]] = {}
        for target, py in PYTHON_TYPE.items():
            cast = CAST[target]
            members: set[Value] = set()
            errors: list[EvaluationError] = []
            for value in values:
                member, error = cast(value)
                members.add(member)
                if error is not None:
                    errors.append(error)
            table[py] = (frozenset(members), tuple(errors))
        if operand.name is not None:
            name, missing = operand.name, operand.missing
            strings, string_errors = table[str]

            def attribute_in(a: Attributes) -> bool:
                v = a.get(name)
                if type(v) is str and not string_errors:
                    return (v in strings) is not negated
                if v is None:
                    raise Fail(False, missing, None)
                v = normalize(v)
                members, errors = table[type(v)]
                result = (v in members) is not negated
                if errors:
                    raise Fail(result, errors, token)
                return result

            return Compiled(attribute_in, BOOLEAN, token)
        fn = operand.fn

        def value_in(a: Attributes) -> bool:
            v = fn(a)
            members, errors = table[type(v)]
            result = (v in members) is not negated
            if errors:
                raise Fail(result, errors, token)
            return result

        return Compiled(value_in, BOOLEAN, token)

    def in_dynamic(self, operand: Compiled, fns: list[Fn], negated: bool, token: object) -> Compiled:
        fn = operand.fn

        def value_in(a: Attributes) -> bool:
            v = fn(a)
            elements = [f(a) for f in fns]
            py, cast = type(v), CAST[type_of(v)]
            errors: list[EvaluationError] = []
            found = False
            for element in elements:
                if type(element) is not py:
                    element, error = cast(element)
                    if error is not None:
                        errors.append(error)
                if element == v:
                    found = True
            return _finish(found is not negated, errors, token)  # type: ignore[return-value]

        return Compiled(value_in, BOOLEAN, token)

    # --- function invocations ----------------------------------------------------------------------------

    def call(self, node: Call) -> Compiled:
        token = object()
        function = resolve(node.name, len(node.args))
        if function is None:
            # Dispatch fails per spec 3.5 at evaluation time (false plus a missing-function error), so an
            # unknown function in a branch that short-circuits away does not spoil the expression.
            errors = (
                EvaluationError(
                    ErrorKind.MISSING_FUNCTION, missing_function_message(node.name, len(node.args))
                ),
            )

            def missing(a: Attributes) -> bool:
                raise Fail(False, errors, token)

            return Compiled(missing, ANY, token)
        args = [self.compile(arg) for arg in node.args]
        result = self.invoke(function, args, token)
        return _fold(result) if all(a.const for a in args) else result

    def invoke(self, function: Function, args: list[Compiled], token: object) -> Compiled:
        params = list(function.params) + [function.variadic or ANY] * (len(args) - len(function.params))
        impl, fns = function.impl, [a.fn for a in args]
        # Positions whose static type differs from the parameter type need a per-event cast.
        casts = [
            (i, PYTHON_TYPE[p], CAST[p])
            for i, (p, a) in enumerate(zip(params, args, strict=True))
            if p is not ANY and a.type is not p
        ]
        if len(fns) == 1 and not casts:
            (f,) = fns

            def unary(a: Attributes) -> Value:
                try:
                    return impl(f(a))
                except FunctionFailure as failure:
                    raise Fail(failure.value, (failure.error,), token) from None

            return Compiled(unary, function.returns, token)

        def call(a: Attributes) -> Value:
            values = [f(a) for f in fns]
            errors: list[EvaluationError] = []
            for i, py, cast in casts:
                if type(values[i]) is not py:
                    values[i], error = cast(values[i])
                    if error is not None:
                        errors.append(error)
            try:
                value = impl(*values)
            except FunctionFailure as failure:
                errors.append(failure.error)
                value = failure.value
            return _finish(value, errors, token)

        return Compiled(call, function.returns, token)


def compile_tree(node: Node) -> Compiled:
    return _Compiler().compile(node)


__all__ = ["Attributes", "Compiled", "compile_tree", "ZERO"]
