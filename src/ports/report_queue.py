"""ReportQueue port: state changes waiting to be reported, and purging of finished rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.model import DeliveryReport


class ReportQueue(Protocol):
    async def pending_reports(self, limit: int) -> list[DeliveryReport]:
        """Messages whose state changed (sent, error, deferred) since they were last acknowledged."""
        ...

    async def mark_reported(self, reports: Sequence[DeliveryReport], now: float) -> int:
        """Set reported_ts on rows whose state is still the one reported (matching version)."""
        ...

    async def purge_finished(self, cutoff: float, require_reported: bool) -> int:
        """Delete sent/errored rows reported (or, when not required, finished) before `cutoff`."""
        ...

    async def prune_send_history(self, before: float) -> int: ...
