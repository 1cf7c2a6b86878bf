"""Reporting: deliver pending delivery reports in batches until drained; acknowledge only on success."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from core.model import DeliveryReport, ReportAck
from ports.clock import Clock
from ports.report_queue import ReportQueue
from ports.report_sink import ReportDeliveryError, ReportSink
from ports.work_locks import WorkLocks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportSummary:
    delivered: int = 0
    batches: int = 0
    failed: str | None = None
    more_work: bool = False


class ReportingService:
    def __init__(
        self,
        queue: ReportQueue,
        sink: ReportSink,
        clock: Clock,
        batch_size: int,
        max_batches_per_tick: int = 50,
        locks: WorkLocks | None = None,
    ) -> None:
        self._locks = locks
        self._queue = queue
        self._sink = sink
        self._clock = clock
        self._batch_size = batch_size
        self._max_batches = max_batches_per_tick

    async def tick(self) -> ReportSummary:
        """Send batches until nothing is pending, a delivery fails, or the per-tick cap is reached.

        Only one process at a time reports (WorkLocks), so a row is not sent by two replicas at once.
        """
        if self._locks is None:
            return await self._deliver_pending()
        async with self._locks.hold("reporting") as held:
            return await self._deliver_pending() if held else ReportSummary()

    async def _deliver_pending(self) -> ReportSummary:
        delivered = batches = 0
        while batches < self._max_batches:
            pending = await self._queue.pending_reports(self._batch_size)
            if not pending:
                return ReportSummary(delivered, batches)
            try:
                ack = await self._sink.deliver(pending)
            except ReportDeliveryError as exc:
                log.warning("delivery report not acknowledged, will retry: %s", exc)
                return ReportSummary(delivered, batches, failed=str(exc))
            delivered += await self._queue.mark_reported(pending, self._clock.now())
            batches += 1
            _check_summary(pending, ack)
            if len(pending) < self._batch_size:
                return ReportSummary(delivered, batches)
        return ReportSummary(delivered, batches, more_work=True)


def expected_summary(reports: Sequence[DeliveryReport]) -> dict[str, int]:
    summary = {"sent": 0, "error": 0, "deferred": 0}
    for report in reports:
        if report.sent_ts is not None:
            summary["sent"] += 1
        elif report.error_ts is not None:
            summary["error"] += 1
        else:
            summary["deferred"] += 1
    return summary


def _check_summary(reports: Sequence[DeliveryReport], ack: ReportAck) -> None:
    if ack.summary is None:
        return
    expected = expected_summary(reports)
    seen = {key: ack.summary.get(key, 0) for key in expected}
    if seen != expected:
        log.warning("receiver summary %s differs from what was sent %s", ack.summary, expected)
