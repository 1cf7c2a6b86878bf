"""Retry timing: exponential growth, cap, jitter bounds, giving up."""

from __future__ import annotations

import pytest

from core.policies.retry import RetryPolicy, give_up_reason, next_attempt_at

NOW = 1_800_000_000.0
NEUTRAL = 0.5  # a jitter draw of 0.5 leaves the delay unchanged
POLICY = RetryPolicy(
    base_seconds=60.0, factor=2.0, max_delay_seconds=3600.0, max_attempts=30, max_lifetime_seconds=5 * 86400.0
)


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 60.0), (1, 60.0), (2, 120.0), (3, 240.0), (4, 480.0), (6, 1920.0), (7, 3600.0), (20, 3600.0), (29, 3600.0)],
)
def test_delay_grows_exponentially_up_to_the_cap(attempts: int, delay: float) -> None:
    assert next_attempt_at(POLICY, attempts, NOW, NOW, NEUTRAL) == NOW + delay


@pytest.mark.parametrize(
    ("draw", "delay"),
    [(0.0, 54.0), (0.25, 57.0), (0.5, 60.0), (0.75, 63.0), (0.999_999, 66.0)],
)
def test_jitter_stays_within_its_fraction(draw: float, delay: float) -> None:
    at = next_attempt_at(POLICY, 1, NOW, NOW, draw)
    assert at is not None
    assert at - NOW == pytest.approx(delay, abs=1e-3)
    assert NOW + 54.0 <= at < NOW + 66.0


def test_no_jitter_policy_ignores_the_draw() -> None:
    policy = RetryPolicy(base_seconds=10.0, jitter=0.0)
    assert {next_attempt_at(policy, 1, NOW, NOW, draw) for draw in (0.0, 0.3, 0.999)} == {NOW + 10.0}


@pytest.mark.parametrize(("attempts", "expected"), [(29, NOW + 3600.0), (30, None), (31, None)])
def test_gives_up_at_max_attempts(attempts: int, expected: float | None) -> None:
    assert next_attempt_at(POLICY, attempts, NOW, NOW, NEUTRAL) == expected


@pytest.mark.parametrize(
    ("first_attempt_ts", "expected"),
    [
        (NOW - (5 * 86400.0 - 120.0), NOW + 60.0),  # next try still inside the lifetime
        (NOW - (5 * 86400.0 - 60.0), NOW + 60.0),  # next try lands exactly on the lifetime: allowed
        (NOW - (5 * 86400.0 - 59.0), None),  # one second past it
        (NOW - 6 * 86400.0, None),
    ],
)
def test_gives_up_past_max_lifetime(first_attempt_ts: float, expected: float | None) -> None:
    assert next_attempt_at(POLICY, 1, first_attempt_ts, NOW, NEUTRAL) == expected


@pytest.mark.parametrize(
    ("span", "text"),
    [(30.0, "30s"), (120.0, "2m"), (7200.0, "2.0h"), (3 * 86400.0, "3.0d"), (36 * 3600.0, "1.5d")],
)
def test_give_up_reason(span: float, text: str) -> None:
    reason = give_up_reason(3, NOW, NOW + span, "451 mailbox busy")
    assert reason == f"gave up after 3 attempts over {text}: last error 451 mailbox busy"


def test_cap_holds_even_with_the_largest_jitter() -> None:
    policy = RetryPolicy(base_seconds=60.0, factor=2.0, max_delay_seconds=3600.0, jitter=0.1)
    assert next_attempt_at(policy, 20, 0.0, 1000.0, 0.999999) == 1000.0 + 3600.0
