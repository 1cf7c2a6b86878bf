"""ServiceState port: operator switches that survive restarts."""

from __future__ import annotations

from typing import Protocol


class ServiceState(Protocol):
    async def is_active(self) -> bool: ...

    async def set_active(self, active: bool) -> None: ...
