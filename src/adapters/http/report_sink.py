"""httpx ReportSink: POST {"delivery_report": [...]} to the application's proxy_sync_url."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from core.model import DeliveryReport, ReportAck
from ports.report_sink import ReportDeliveryError, ReportSink


def report_item(report: DeliveryReport) -> dict[str, Any]:
    """The seed's delivery_report item (plus refused_recipients); timestamps are whole POSIX seconds."""
    return {
        "id": report.id,
        "account_id": report.account_id,
        "priority": report.priority,
        "sent_ts": _seconds(report.sent_ts),
        "error_ts": _seconds(report.error_ts),
        "error": report.error,
        "deferred_ts": _seconds(report.deferred_ts),
        # asyncmail's addition to the seed format: recipients the server refused while accepting the rest
        "refused_recipients": list(report.refused_recipients),
    }


def _seconds(ts: float | None) -> int | None:
    return None if ts is None else int(ts)


def redacted(url: str) -> str:
    """The URL without credentials or query, for error messages and logs."""
    parts = httpx.URL(url)
    return str(parts.copy_with(username=None, password=None, query=None, fragment=None))


class HttpxReportSink(ReportSink):
    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url
        self._shown = redacted(url)

    async def deliver(self, reports: Sequence[DeliveryReport]) -> ReportAck:
        body = {"delivery_report": [report_item(r) for r in reports]}
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise ReportDeliveryError(f"POST {self._shown} failed: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise ReportDeliveryError(f"POST {self._shown} answered {response.status_code}")
        return ReportAck(_summary(response))


def _summary(response: httpx.Response) -> dict[str, int] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    summary = {k: v for k, v in data.items() if k in ("sent", "error", "deferred") and isinstance(v, int)}
    return summary or None
