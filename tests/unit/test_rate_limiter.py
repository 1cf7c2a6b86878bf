"""Sliding-window rate limits, as tables of explicit times."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from core.model import RateLimits
from core.policies.rate_limiter import history_horizon, plan

N = 1_800_000_000.0  # "now" in every row


class RateDecision(NamedTuple):
    """How many of the wanted sends may go now, and when the next slot frees (None: all may go)."""

    allowed: int
    next_free_at: float | None


def decide(history: list[float], limits: RateLimits, now: float, wanted: int) -> RateDecision:
    """The decision `plan` implies: those planned for `now` go, the next planned time is when a slot frees."""
    times = plan(history, limits, now, wanted)
    later = [t for t in times if t > now]
    return RateDecision(sum(1 for t in times if t <= now), min(later) if later else None)


DECISIONS = [
    pytest.param([N - 1.0] * 100, RateLimits(), 7, RateDecision(7, None), id="unlimited"),
    pytest.param([N - 50.0, N - 10.0], RateLimits(per_minute=5), 2, RateDecision(2, None), id="minute-partly-used"),
    pytest.param(
        [N - 50.0, N - 10.0], RateLimits(per_minute=5), 10, RateDecision(3, N + 10.0), id="minute-partly-used-too-many"
    ),
    pytest.param(
        [N - 45.0, N - 30.0, N - 5.0], RateLimits(per_minute=3), 1, RateDecision(0, N + 15.0), id="minute-window-full"
    ),
    pytest.param(
        [N - 5.0, N - 45.0, N - 30.0],
        RateLimits(per_minute=3),
        4,
        RateDecision(0, N + 15.0),
        id="minute-window-full-unsorted-history",
    ),
    pytest.param(
        [N - 3000.0, N - 2000.0, N - 100.0],
        RateLimits(per_minute=10, per_hour=3, per_day=100),
        2,
        RateDecision(0, N + 600.0),
        id="hour-window-binds-when-full",
    ),
    pytest.param(
        [N - 1800.0, N - 900.0],
        RateLimits(per_minute=5, per_hour=4, per_day=50),
        5,
        RateDecision(2, N + 1800.0),
        id="hour-window-binds-partly-used",
    ),
    pytest.param(
        [N - 80_000.0, N - 50_000.0],
        RateLimits(per_minute=10, per_hour=10, per_day=2),
        1,
        RateDecision(0, N + 6400.0),
        id="day-window-binds",
    ),
    pytest.param(
        [N - 60.0, N - 60.0], RateLimits(per_minute=2), 2, RateDecision(2, None), id="sends-at-now-60-expired"
    ),
    pytest.param([N - 60.0, N - 59.0], RateLimits(per_minute=2), 2, RateDecision(1, N + 1.0), id="now-59-still-counts"),
    pytest.param(
        [N - 86_400.0, N - 90_000.0], RateLimits(per_day=1), 1, RateDecision(1, None), id="older-than-a-day-ignored"
    ),
    pytest.param([N - 1.0], RateLimits(per_minute=1), 0, RateDecision(0, None), id="wanted-0-limited"),
    pytest.param([], RateLimits(), 0, RateDecision(0, None), id="wanted-0-unlimited"),
    pytest.param([], RateLimits(per_minute=2), 5, RateDecision(2, N + 60.0), id="empty-history-more-than-limit"),
]


@pytest.mark.parametrize(("history", "limits", "wanted", "expected"), DECISIONS)
def test_decide(history: list[float], limits: RateLimits, wanted: int, expected: RateDecision) -> None:
    assert decide(history, limits, N, wanted) == expected


@pytest.mark.parametrize(
    ("history", "limits", "wanted", "expected"),
    [p for p in DECISIONS if getattr(p.values[3], "next_free_at", None) is not None],
)
def test_next_free_at_is_exactly_when_a_slot_frees(
    history: list[float], limits: RateLimits, wanted: int, expected: RateDecision
) -> None:
    """After sending what was allowed, nothing more fits just before next_free_at, one more fits at it."""
    after = [*history, *([N] * expected.allowed)]
    free_at = expected.next_free_at
    assert free_at is not None
    assert decide(after, limits, free_at - 0.001, 1).allowed == 0
    assert decide(after, limits, free_at, 1).allowed == 1


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (RateLimits(), None),
        (RateLimits(per_minute=5), N - 60.0),
        (RateLimits(per_minute=5, per_hour=100), N - 3600.0),
        (RateLimits(per_hour=100), N - 3600.0),
        (RateLimits(per_minute=1, per_hour=2, per_day=3), N - 86_400.0),
    ],
)
def test_history_horizon(limits: RateLimits, expected: float | None) -> None:
    assert history_horizon(limits, N) == expected


@pytest.mark.parametrize(
    ("history", "limits", "wanted", "expected"),
    [
        ([], RateLimits(), 3, [N, N, N]),
        ([], RateLimits(per_minute=2), 5, [N, N, N + 60, N + 60, N + 120]),
        ([N - 50, N - 10], RateLimits(per_minute=2), 3, [N + 10, N + 50, N + 70]),
        ([N - 30], RateLimits(per_minute=5, per_hour=2), 3, [N, N - 30 + 3600, N + 3600]),
        ([N - 60], RateLimits(per_minute=1), 1, [N]),  # a send exactly one window ago has left it
        ([], RateLimits(per_minute=1), 0, []),
    ],
)
def test_plan_gives_each_message_its_own_slot(history, limits, wanted, expected) -> None:
    assert plan(history, limits, N, wanted) == expected
