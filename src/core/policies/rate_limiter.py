"""Sliding-window rate limits per account (per minute, hour and day).

`history` is the account's send times (any order) covering at least the longest window.
A send at time t occupies a slot of a window of length W until t + W.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.model import RateLimits


@dataclass(frozen=True, slots=True)
class RateDecision:
    """`allowed` sends may go now; if fewer than wanted, the rest wait until `next_free_at`."""

    allowed: int
    next_free_at: float | None


def decide(history: Sequence[float], limits: RateLimits, now: float, wanted: int) -> RateDecision:
    windows = limits.windows()
    if not windows or wanted <= 0:
        return RateDecision(allowed=max(wanted, 0), next_free_at=None)
    recent = sorted(ts for ts in history if ts > now - max(w for w, _ in windows))
    allowed = wanted
    for seconds, limit in windows:
        used = sum(1 for ts in recent if ts > now - seconds)
        allowed = min(allowed, max(limit - used, 0))
    if allowed >= wanted:
        return RateDecision(allowed=allowed, next_free_at=None)
    return RateDecision(allowed=allowed, next_free_at=_next_free(recent, windows, now, allowed))


def _next_free(recent: list[float], windows: tuple[tuple[float, int], ...], now: float, sending: int) -> float:
    """Earliest time at which every window has a free slot, after `sending` more sends at `now`."""
    after = recent + [now] * sending
    moment = now
    for seconds, limit in windows:
        in_window = [ts for ts in after if ts > now - seconds]
        excess = len(in_window) - limit + 1
        if excess > 0:
            moment = max(moment, in_window[excess - 1] + seconds)
    return moment


def history_horizon(limits: RateLimits, now: float) -> float | None:
    """Oldest send time that can still matter, or None when the account is unlimited."""
    windows = limits.windows()
    if not windows:
        return None
    return now - max(seconds for seconds, _ in windows)


def plan(history: Sequence[float], limits: RateLimits, now: float, wanted: int) -> list[float]:
    """The earliest send time of each of `wanted` messages taken in order: `now` for those that may go
    now, the moment their own slot frees for the others (the k-th waiting message gets the k-th slot).

    Deferring each message to its own slot, rather than all to the first free one, means a backlog
    behind a limit is rescheduled once, not re-claimed and re-deferred every window.
    """
    windows = limits.windows()
    if not windows:
        return [now] * max(wanted, 0)
    longest = max(seconds for seconds, _ in windows)
    sends = sorted(ts for ts in history if ts > now - longest)
    times: list[float] = []
    for _ in range(max(wanted, 0)):
        at = now
        for seconds, limit in windows:
            # With `limit` sends at or after sends[-limit], the next may go once that one leaves the window.
            if len(sends) >= limit:
                at = max(at, sends[-limit] + seconds)
        times.append(at)
        sends.append(at)
    return times
