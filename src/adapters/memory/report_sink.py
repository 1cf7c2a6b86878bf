"""Recording ReportSink: keeps every acknowledged batch in `batches`; `fail_next()` scripts outages."""

from __future__ import annotations

from collections.abc import Sequence

from core.model import DeliveryReport, ReportAck
from ports.report_sink import ReportDeliveryError, ReportSink


class RecordingReportSink(ReportSink):
    def __init__(self) -> None:
        self.batches: list[list[DeliveryReport]] = []
        self._failures = 0

    def fail_next(self, times: int = 1) -> None:
        self._failures += times

    def reset(self) -> None:
        self.batches.clear()
        self._failures = 0

    @property
    def reports(self) -> list[DeliveryReport]:
        return [report for batch in self.batches for report in batch]

    async def deliver(self, reports: Sequence[DeliveryReport]) -> ReportAck:
        if self._failures:
            self._failures -= 1
            raise ReportDeliveryError("recording sink told to fail")
        self.batches.append(list(reports))
        return ReportAck(None)
