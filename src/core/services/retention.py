"""Retention: purge finished rows past the window, prune send history, fail orphaned messages."""

from __future__ import annotations

from dataclasses import dataclass

from core.model import Failed
from core.policies import retention
from ports.clock import Clock
from ports.dispatch_queue import DispatchQueue
from ports.report_queue import ReportQueue

SEND_HISTORY_SECONDS = 86400.0  # the longest rate-limit window


@dataclass(frozen=True, slots=True)
class RetentionSummary:
    purged: int
    orphans_failed: int


class RetentionService:
    def __init__(
        self,
        reports: ReportQueue,
        dispatch: DispatchQueue,
        clock: Clock,
        retention_seconds: float,
        reporting_enabled: bool,
    ) -> None:
        self._reports = reports
        self._dispatch = dispatch
        self._clock = clock
        self._retention_seconds = retention_seconds
        self._reporting_enabled = reporting_enabled

    async def tick(self) -> RetentionSummary:
        """Rows are purged only once reported, unless reporting is off (then counted from their final state)."""
        now = self._clock.now()
        cutoff = retention.cutoff(self._retention_seconds, now)
        purged = await self._reports.purge_finished(cutoff, require_reported=self._reporting_enabled)
        await self._reports.prune_send_history(now - SEND_HISTORY_SECONDS)
        orphans = await self._dispatch.orphaned(now, 500)
        if orphans:
            await self._dispatch.record_outcomes(
                [Failed(mid, aid, now, f"account {aid!r} no longer exists") for mid, aid in orphans]
            )
        return RetentionSummary(purged, len(orphans))
