"""How deeply a JSON-like document nests: bounded before anything recursive (an encoder, a validator) runs."""

from __future__ import annotations

from collections.abc import Iterable


def nesting_exceeds(value: object, limit: int) -> bool:
    """Whether ``value`` has lists/dicts nested more than ``limit`` deep; iterative, so never a RecursionError."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
