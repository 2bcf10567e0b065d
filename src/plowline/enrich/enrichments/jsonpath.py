"""A small JSONPath for PII pseudonymisation: ``$``, ``.name``, ``['a','b']``,
``[0]``/``[-1]``, ``*``/``[*]`` and ``..``; filters and slices are refused.
It finds values in place, so that they can be changed without adding keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class JsonPathError(ValueError):
    """A JSONPath outside the subset Plowline evaluates."""


# One step: (recursive descent?, the names/indexes it selects or None for *).
Step = tuple[bool, tuple[str | int, ...] | None]
_DOT_STEP_RE = re.compile(r"(\.\.?)([^.\[\]]+)")
_BRACKET_STEP_RE = re.compile(r"(\.{0,2})\[([^\]]*)\]")
_ITEM_RE = re.compile(r"\s*(?:'([^']*)'|\"([^\"]*)\"|(-?[0-9]+))\s*")


def _bracket(content: str) -> tuple[str | int, ...] | None:
    if content.strip() == "*":
        return None
    items: list[str | int] = []
    position = 0
    while True:
        match = _ITEM_RE.match(content, position)
        if match is None:
            raise JsonPathError(
                f"[{content}] is not supported: use names, indexes or *"
            )
        single, double, index = match.groups()
        items.append(int(index) if index is not None else (single or double or ""))
        position = match.end()
        if position == len(content):
            return tuple(items)
        if content[position] != ",":
            raise JsonPathError(f"[{content}] is not a list of names or indexes")
        position += 1


@dataclass(frozen=True, slots=True)
class JsonPath:
    """The JSONPath subset PII needs: ``$``, ``.name``, ``['a','b']``, ``[0]``,
    ``*``, ``..`` (recursive descent). Filters and slices are refused."""

    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: Any) -> JsonPath:
        if not isinstance(text, str) or not text.startswith("$"):
            raise JsonPathError("a path starting with $")
        steps: list[Step] = []
        position = 1
        while position < len(text):
            dot = _DOT_STEP_RE.match(text, position)
            bracket = None if dot else _BRACKET_STEP_RE.match(text, position)
            if dot is not None:
                name = dot[2]
                steps.append((dot[1] == "..", None if name == "*" else (name,)))
                position = dot.end()
            elif bracket is not None:
                steps.append((bracket[1] == "..", _bracket(bracket[2])))
                position = bracket.end()
            else:
                raise JsonPathError(f"cannot read {text[position:]!r}")
        return cls(text, tuple(steps))

    def locate(self, holder: list[Any]) -> Iterator[tuple[Any, str | int]]:
        """The (container, key) slots the path selects below ``holder[0]``,
        each once."""
        slots: list[tuple[Any, str | int]] = [(holder, 0)]
        for recursive, selectors in self.steps:
            nodes = [container[key] for container, key in slots]
            if recursive:
                nodes = [found for node in nodes for found in _descendants(node)]
            seen: set[tuple[int, str | int]] = set()
            slots = []
            for node in nodes:
                for slot in _children(node, selectors):
                    if (id(slot[0]), slot[1]) not in seen:
                        seen.add((id(slot[0]), slot[1]))
                        slots.append(slot)
        yield from slots


def _children(
    node: Any, selectors: tuple[str | int, ...] | None
) -> Iterator[tuple[Any, str | int]]:
    if isinstance(node, dict):
        keys = node.keys() if selectors is None else selectors
        yield from ((node, key) for key in keys if isinstance(key, str) and key in node)
    elif isinstance(node, list):
        size = len(node)
        indexes = range(size) if selectors is None else selectors
        for index in indexes:
            if isinstance(index, int) and -size <= index < size:
                yield node, index % size


def _descendants(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node
    if isinstance(node, dict | list):
        for child in children:
            if isinstance(child, dict | list):
                yield from _descendants(child)
