"""CESQL text to syntax tree, with an LALR(1) lark parser (grammar in ``grammar.lark``).

The tree is built by an inline transformer while parsing, so no intermediate parse tree is materialised and
deeply nested input does not recurse in Python.
"""

from __future__ import annotations

import re
import threading
from importlib import resources
from typing import Any

from lark import (
    Lark,
    Token,
    Transformer,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from .nodes import Binary, Call, Exists, Identifier, In, Like, Literal, Negate, Node, Not
from .runtime import ErrorKind

_INT_LIMIT = 2**31  # magnitude of the most negative Integer; only valid when negated


class CESQLParseError(ValueError):
    """The expression is not valid CESQL. ``column`` is 1-based, or 0 when not tied to a position."""

    kind = ErrorKind.PARSE

    def __init__(self, message: str, expression: str, column: int = 0) -> None:
        super().__init__(message)
        self.expression = expression
        self.column = column


# Terminal names as users should read them in error messages.
_TERMINALS = {
    "LOGIC_OP": "AND/OR/XOR",
    "CMP_OP": "a comparison operator",
    "MUL_OP": "'*', '/' or '%'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "NOT": "NOT",
    "LIKE": "LIKE",
    "IN": "IN",
    "EXISTS": "EXISTS",
    "TRUE": "TRUE",
    "FALSE": "FALSE",
    "FUNC": "a function call",
    "INT": "an integer",
    "IDENT": "an attribute name",
    "STRING": "a string literal",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "$END": "end of expression",
}


def _unquote(token: str) -> str:
    quote = token[0]
    # Only the delimiting quote is an escape sequence; other backslash pairs stay as written.
    return re.sub(
        r"\\(.)", lambda m: m.group(1) if m.group(1) == quote else m.group(0), token[1:-1], flags=re.S
    )


class _Build(Transformer[Token, Node]):
    """Inline LALR callbacks: each receives the already-built children of one grammar alternative."""

    def integer(self, children: list[Token]) -> Literal:
        value = int(children[0])
        if value > _INT_LIMIT:
            raise _Rejected(f"integer literal {children[0]} is outside the 32-bit range", children[0])
        return Literal(value, raw=True)

    def string(self, children: list[Token]) -> Literal:
        return Literal(_unquote(children[0]))

    def true(self, children: list[Token]) -> Literal:
        return Literal(True)

    def false(self, children: list[Token]) -> Literal:
        return Literal(False)

    def identifier(self, children: list[Token]) -> Identifier:
        # Attribute names are lower-case in CloudEvents; keywords and names are matched case-insensitively.
        return Identifier(children[0].lower())

    def exists(self, children: list[Token]) -> Exists:
        return Exists(children[1].lower())

    def call(self, children: list[Any]) -> Call:
        args = tuple(c for c in children[1:] if c is not None)
        return Call(children[0].upper(), args)

    def not_op(self, children: list[Any]) -> Not:
        return Not(children[1])

    def negate(self, children: list[Any]) -> Node:
        operand = children[1]
        if isinstance(operand, Literal) and operand.raw:
            return Literal(-operand.value)  # type: ignore[operator]
        return Negate(operand)

    def plus(self, children: list[Any]) -> Literal:
        operand = children[1]
        if isinstance(operand, Literal) and operand.raw:
            return Literal(operand.value)
        raise _Rejected(
            "'+' may only prefix an integer literal (there is no unary plus operator)", children[0]
        )

    def parenthesized(self, children: list[Any]) -> Node:
        inner = children[0]
        # "-(2147483648)" must not fold into a literal: the parenthesised literal stands on its own.
        return Literal(inner.value) if isinstance(inner, Literal) else inner

    def arith(self, children: list[Any]) -> Binary:
        return Binary(str(children[1]), children[0], children[2])

    def compare(self, children: list[Any]) -> Binary:
        op = str(children[1])
        return Binary("!=" if op == "<>" else op, children[0], children[2])

    def logic(self, children: list[Any]) -> Binary:
        return Binary(children[1].upper(), children[0], children[2])

    def like(self, children: list[Any]) -> Like:
        return Like(children[0], _unquote(children[3]), negated=children[1] is not None)

    def in_set(self, children: list[Any]) -> In:
        return In(children[0], tuple(children[3:]), negated=children[1] is not None)


class _Rejected(Exception):
    def __init__(self, message: str, token: Token) -> None:
        super().__init__(message)
        self.token = token


_lock = threading.Lock()
_parser: Lark | None = None


def _get_parser() -> Lark:
    global _parser
    with _lock:
        if _parser is None:
            grammar = resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
            _parser = Lark(grammar, parser="lalr", lexer="contextual", transformer=_Build(), start="start")
        return _parser


def _describe(error: UnexpectedInput, expression: str) -> str:
    expected: set[str] = set()
    if isinstance(error, UnexpectedToken | UnexpectedEOF):
        expected = set(error.expected)
    elif isinstance(error, UnexpectedCharacters):
        expected = set(error.allowed or ())
    wanted = sorted({_TERMINALS.get(name, name) for name in expected if name in _TERMINALS})
    if isinstance(error, UnexpectedCharacters):
        pos = error.pos_in_stream
        char = expression[pos] if pos is not None and pos < len(expression) else ""
        if char in ("'", '"'):
            return f"unterminated string literal starting at column {error.column}"
        what = f"unexpected character {char!r}"
    elif isinstance(error, UnexpectedToken) and error.token.type != "$END":
        what = f"unexpected {error.token.value!r}"
    else:
        return f"unexpected end of expression; expected {', '.join(wanted) or 'more input'}"
    hint = f"; expected {', '.join(wanted)}" if wanted else ""
    return f"{what} at column {error.column}{hint}"


def parse(expression: str) -> Node:
    """Parse ``expression``; raises :class:`CESQLParseError` naming the column and what was expected."""
    if not isinstance(expression, str):
        raise CESQLParseError(
            f"expression must be a string, not {type(expression).__name__}", str(expression)
        )
    if not expression.strip():
        raise CESQLParseError("expression is empty", expression)
    try:
        return _get_parser().parse(expression)  # type: ignore[return-value]
    except _Rejected as exc:
        column = getattr(exc.token, "column", 0) or 0
        raise CESQLParseError(f"{exc} (column {column})", expression, column) from None
    except UnexpectedInput as exc:
        raise CESQLParseError(_describe(exc, expression), expression, exc.column) from None
    except RecursionError:
        raise CESQLParseError("expression is nested too deeply", expression) from None
