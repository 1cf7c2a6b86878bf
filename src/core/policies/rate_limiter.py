"""Sliding-window rate limits per account (per minute, hour and day).

`history` is the account's send times (any order) covering at least the longest window.
A send at time t occupies a slot of a window of length W until t + W.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.model import RateLimits


def history_horizon(limits: RateLimits, now: float) -> float | None:
    """Oldest send time that can still matter, or None when the account is unlimited."""
    windows = limits.windows()
    if not windows:
        return None
    return now - max(seconds for seconds, _ in windows)


def plan(history: Sequence[float], limits: RateLimits, now: float, wanted: int) -> list[float]:
    """The earliest send time of each of `wanted` messages taken in order: `now` for those that may go
    now, the moment their own slot frees for the others (the k-th waiting message gets the k-th slot).

    Holding each message until its own slot, rather than all until the first free one, means a
    backlog behind a limit is not re-claimed all at once every time a single slot frees.
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
