"""Clock port: the only source of time for the core and the loops."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current time in POSIX seconds."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Wait until `event` is set or `timeout` seconds of this clock's time have passed.

        Returns True when the event was set. `timeout=None` waits for the event alone.
        """
        ...

    async def sleep(self, seconds: float) -> None:
        """Pause this long (a frozen clock moves itself forward instead of waiting)."""
        ...
