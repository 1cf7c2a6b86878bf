"""When to try a temporarily failed message again, and when to give up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 60.0
    factor: float = 2.0
    max_delay_seconds: float = 3600.0
    max_attempts: int = 30
    max_lifetime_seconds: float = 5 * 86400.0
    jitter: float = 0.1


def next_attempt_at(
    policy: RetryPolicy, attempts: int, first_attempt_ts: float, now: float, jitter_draw: float
) -> float | None:
    """Time of the next try after `attempts` failed tries, or None to give up.

    `jitter_draw` is a number in [0, 1) supplied by the caller, so this stays deterministic.
    """
    if attempts >= policy.max_attempts:
        return None
    exponent = min(max(attempts - 1, 0), 64)  # past this the cap applies anyway; keeps the power finite
    delay = policy.base_seconds * policy.factor**exponent
    delay = min(delay * (1.0 + policy.jitter * (2.0 * jitter_draw - 1.0)), policy.max_delay_seconds)
    at = now + max(delay, 0.0)
    if at - first_attempt_ts > policy.max_lifetime_seconds:
        return None
    return at


def give_up_reason(attempts: int, first_attempt_ts: float, now: float, last_error: str) -> str:
    span = _human_span(now - first_attempt_ts)
    return f"gave up after {attempts} attempts over {span}: last error {last_error}"


def _human_span(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
