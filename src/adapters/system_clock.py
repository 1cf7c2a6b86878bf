"""The only module that reads wall time or sleeps."""

from __future__ import annotations

import asyncio
import time

from ports.clock import Clock


class SystemClock(Clock):
    def now(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if timeout is not None and timeout <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return event.is_set()
        return True

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))
