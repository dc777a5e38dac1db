"""The LIKE operator's pattern matcher (spec 3.4.3), compiled once per pattern.

``%`` matches any run of characters, ``_`` exactly one, and ``\\%`` / ``\\_`` match the literal character;
a backslash before anything else is an ordinary character. Common shapes become plain string methods
(``==``, ``startswith``, ``endswith``, ``in``); the general case matches the fixed-length pieces between
``%`` greedily left to right, which is exact for such patterns and linear-time, so a hostile pattern
cannot trigger regex backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Segment = list[str | None]  # characters between two unescaped "%"; None stands for an unescaped "_"

Matcher = Callable[[str], bool]


def _segments(pattern: str) -> list[Segment]:
    segments: list[Segment] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n and pattern[i + 1] in "%_":
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            segments.append([])
        elif ch == "_":
            segments[-1].append(None)
        else:
            segments[-1].append(ch)
        i += 1
    return segments


def _literal(segment: Segment) -> str | None:
    return None if None in segment else "".join(c for c in segment if c is not None)


def _regex(segment: Segment) -> re.Pattern[str]:
    return re.compile("".join("." if c is None else re.escape(c) for c in segment), re.S)


def compile_like(pattern: str) -> Matcher:
    """Return a predicate telling whether a string matches the LIKE ``pattern``."""
    segments = _segments(pattern)
    literals = [_literal(s) for s in segments]
    if len(segments) == 1:
        if literals[0] is not None:
            text = literals[0]
            return lambda s: s == text
        rx = _regex(segments[0])
        return lambda s: rx.fullmatch(s) is not None
    if all(lit is not None for lit in literals):
        if len(segments) == 2:
            head, tail = literals[0] or "", literals[1] or ""
            if not tail:
                return lambda s: s.startswith(head)
            if not head:
                return lambda s: s.endswith(tail)
            size = len(head) + len(tail)
            return lambda s: len(s) >= size and s.startswith(head) and s.endswith(tail)
        if len(segments) == 3 and not literals[0] and not literals[2]:
            middle = literals[1] or ""
            return lambda s: middle in s
    return _general(segments)


def _general(segments: list[Segment]) -> Matcher:
    head, *middles, tail = segments
    head_len, tail_len = len(head), len(tail)
    min_len = sum(len(s) for s in segments)

    def anchored(segment: Segment) -> Callable[[str, int], bool]:
        literal = _literal(segment)
        if literal is not None:
            return lambda s, pos: s.startswith(literal, pos)
        rx = _regex(segment)
        return lambda s, pos: rx.match(s, pos) is not None

    def floating(segment: Segment) -> Callable[[str, int, int], int]:
        literal = _literal(segment)
        if literal is not None:
            return lambda s, pos, end: s.find(literal, pos, end)

        rx = _regex(segment)

        def search(s: str, pos: int, end: int) -> int:
            found = rx.search(s, pos, end)
            return -1 if found is None else found.start()

        return search

    head_ok = anchored(head)
    tail_ok = anchored(tail)
    searches = [(floating(m), len(m)) for m in middles if m]

    def match(s: str) -> bool:
        n = len(s)
        if n < min_len or not head_ok(s, 0):
            return False
        end = n - tail_len
        if not tail_ok(s, end):
            return False
        pos = head_len
        for search, size in searches:
            found = search(s, pos, end)
            if found < 0:
                return False
            pos = found + size
        return True

    return match
