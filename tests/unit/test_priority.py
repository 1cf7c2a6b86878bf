"""parse_priority: names in any case, numbers and numeric strings; everything else is InvalidPriority."""

from __future__ import annotations

import pytest

from core.errors import InvalidMessage, InvalidPriority
from core.model import Priority
from core.policies.priority import parse_priority


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Priority.HIGH, Priority.HIGH),
        ("immediate", Priority.IMMEDIATE),
        ("IMMEDIATE", Priority.IMMEDIATE),
        ("High", Priority.HIGH),
        ("mEdIuM", Priority.MEDIUM),
        (" low ", Priority.LOW),
        (0, Priority.IMMEDIATE),
        (1, Priority.HIGH),
        (2, Priority.MEDIUM),
        (3, Priority.LOW),
        ("0", Priority.IMMEDIATE),
        ("3", Priority.LOW),
        (" 2 ", Priority.MEDIUM),
    ],
)
def test_accepts_names_numbers_and_numeric_strings(value: object, expected: Priority) -> None:
    assert parse_priority(value) is expected


@pytest.mark.parametrize(
    "value",
    [True, False, 4, -1, "4", "-1", "+1", "urgent", "", "  ", "1.0", 1.0, None, [1], b"low", "²", "٣"],
)
def test_rejects_everything_else(value: object) -> None:
    with pytest.raises(InvalidPriority, match=r"bad priority .*immediate, high, medium, low or 0-3"):
        parse_priority(value)


def test_invalid_priority_is_an_invalid_message() -> None:
    with pytest.raises(InvalidMessage):
        parse_priority("urgent")
