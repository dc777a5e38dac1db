"""Syntax tree of a parsed CESQL expression; the compiler turns it into closures and then drops it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | int | bool
    # An unsigned integer as written in the source: a unary minus directly in front of it folds into the
    # literal, which is how -2147483648 stays representable although 2147483648 alone is out of range.
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Identifier:
    name: str


@dataclass(frozen=True, slots=True)
class Exists:
    name: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # AND OR XOR = != < <= > >= + - * / %   ("<>" is normalised to "!=")
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Like:
    operand: Node
    pattern: str
    negated: bool


@dataclass(frozen=True, slots=True)
class In:
    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # upper-cased
    args: tuple[Node, ...]


Node = Literal | Identifier | Exists | Not | Negate | Binary | Like | In | Call
