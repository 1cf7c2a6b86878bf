"""ReportSink port: deliver delivery reports to the application."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.model import DeliveryReport, ReportAck


class ReportDeliveryError(Exception):
    """The receiver did not acknowledge the batch (down, timeout, non-2xx)."""


class ReportSink(Protocol):
    async def deliver(self, reports: Sequence[DeliveryReport]) -> ReportAck:
        """Deliver one batch; return only when the receiver acknowledged it, else raise ReportDeliveryError."""
        ...
