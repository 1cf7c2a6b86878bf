"""Endpoints that exist only in test_mode: read the fake outbox and reports, move the frozen clock."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from adapters.http.report_sink import report_item
from adapters.memory.clock import FrozenClock
from adapters.memory.mail_sender import RecordingMailSender
from adapters.memory.report_sink import RecordingReportSink
from entrypoints.api.schemas import COMMON_ERRORS, ERROR

MAX_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last moment a Date header can carry


class OutboxItem(BaseModel):
    id: str
    account_id: str
    envelope_from: str
    recipients: list[str]
    subject: str
    ts: float
    data: str = Field(description="the message as sent on the wire")


class OutboxResponse(BaseModel):
    ok: bool = True
    messages: list[OutboxItem]


class ClockResponse(BaseModel):
    ok: bool = True
    now: float


class ClockMove(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    advance: float | None = Field(None, ge=0, le=MAX_TS, description="seconds to move forward")
    set: float | None = Field(None, ge=0, le=MAX_TS, description="absolute POSIX time (not earlier than now)")


class ReportsResponse(BaseModel):
    ok: bool = True
    batches: list[list[dict[str, object]]]


def testing_router(sender: RecordingMailSender, clock: FrozenClock, sink: RecordingReportSink | None) -> APIRouter:
    router = APIRouter(prefix="/test", tags=["test_mode"], responses={400: ERROR, 404: ERROR, **COMMON_ERRORS})

    @router.get("/outbox", response_model=OutboxResponse)
    async def outbox() -> OutboxResponse:
        """Every message the fake SMTP server accepted, oldest first."""
        return OutboxResponse(
            messages=[
                OutboxItem(
                    id=m.message.id,
                    account_id=m.account_id,
                    envelope_from=m.envelope_from,
                    recipients=list(m.recipients),
                    subject=m.message.subject,
                    ts=m.ts,
                    data=m.data.decode("utf-8", "replace"),
                )
                for m in sender.sent
            ]
        )

    @router.delete("/outbox", response_model=OutboxResponse)
    async def clear_outbox() -> OutboxResponse:
        sender.reset()
        return OutboxResponse(messages=[])

    @router.get("/clock", response_model=ClockResponse)
    async def read_clock() -> ClockResponse:
        return ClockResponse(now=clock.now())

    @router.post("/clock", response_model=ClockResponse)
    async def move_clock(body: ClockMove) -> ClockResponse:
        """Move the frozen clock forward (to reach deferred_ts, retry times, rate-limit windows)."""
        try:
            if body.set is not None:
                clock.set(body.set)
            if body.advance is not None:
                clock.advance(body.advance)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return ClockResponse(now=clock.now())

    @router.get("/reports", response_model=ReportsResponse)
    async def reports() -> ReportsResponse:
        """Delivery report batches received by the in-memory sink ([sync] backend = "memory")."""
        if sink is None:
            raise HTTPException(404, 'reports are recorded only with [sync] backend = "memory"')
        return ReportsResponse(batches=[[report_item(r) for r in batch] for batch in sink.batches])

    return router
