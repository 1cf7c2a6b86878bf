"""Priority parsing and the order in which due messages are taken."""

from __future__ import annotations

from core.errors import InvalidPriority
from core.model import Priority


def parse_priority(value: object) -> Priority:
    """Accept a Priority, its name (any case) or its number; anything else is InvalidPriority."""
    if isinstance(value, Priority):
        return value
    if isinstance(value, bool):
        raise InvalidPriority(f"bad priority {value!r}: use immediate, high, medium, low or 0-3")
    if isinstance(value, int):
        try:
            return Priority(value)
        except ValueError:
            pass
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return parse_priority(int(text))
        try:
            return Priority[text.upper()]
        except KeyError:
            pass
    raise InvalidPriority(f"bad priority {value!r}: use immediate, high, medium, low or 0-3")
