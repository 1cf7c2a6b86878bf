"""A clock that moves only when told to: test_mode and unit tests."""

from __future__ import annotations

import asyncio
import math

from ports.clock import Clock

MAX_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z


class FrozenClock(Clock):
    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._moved: asyncio.Event | None = None

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a frozen clock only moves forward")
        return self.set(self._now + seconds)

    def set(self, ts: float) -> float:
        if ts < self._now:
            raise ValueError("a frozen clock only moves forward")
        if not math.isfinite(ts) or ts > MAX_TS:
            raise ValueError("a frozen clock stops at the end of year 9999")
        self._now = float(ts)
        if self._moved is not None:
            self._moved.set()
            self._moved = None
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Moves fake time forward by `seconds`, then yields once to the event loop."""
        if seconds > 0:
            self.advance(seconds)
        await asyncio.sleep(0)  # noqa: TID251 -- a yield, not a wait

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Returns when the event is set or the clock has been moved past now + timeout."""
        deadline = None if timeout is None else self._now + timeout
        while not event.is_set():
            if deadline is not None and self._now >= deadline:
                return False
            if self._moved is None:
                self._moved = asyncio.Event()
            moved = self._moved
            waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(moved.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return True
