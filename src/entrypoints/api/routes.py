"""The seed's endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from core.errors import AccountInUse, AccountNotFound, InvalidPriority
from core.model import MessageStatus
from core.policies.priority import parse_priority
from entrypoints.api.convert import account_out, message_out, to_account, to_message
from entrypoints.api.deps import AppServices, services
from entrypoints.api.schemas import (
    COMMON_ERRORS,
    ERROR,
    AccountIn,
    AccountResponse,
    AccountsResponse,
    ActiveResponse,
    AddMessagesRequest,
    AddMessagesResponse,
    AttemptOut,
    DeleteAccountResponse,
    MessageDetailResponse,
    MessagesResponse,
    OkResponse,
    QueueOut,
    RejectedItem,
    StatusResponse,
)
from ports.message_store import InvalidCursor

Services = Annotated[AppServices, Depends(services)]
router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {400: ERROR, **COMMON_ERRORS}


@router.post("/commands/add-messages", response_model=AddMessagesResponse, tags=["commands"], responses=ERRORS)
async def add_messages(body: AddMessagesRequest, svc: Services) -> AddMessagesResponse:
    """Validate and enqueue a batch; each rejected entry comes back with its id and reason."""
    if len(body.messages) > svc.max_batch:
        raise HTTPException(400, f"too many messages: {len(body.messages)} > {svc.max_batch} per request")
    try:
        default = svc.default_priority if body.default_priority is None else parse_priority(body.default_priority)
    except InvalidPriority as exc:
        raise HTTPException(400, f"default_priority: {exc}") from None
    result = await svc.intake.add([to_message(entry, default) for entry in body.messages])
    if result.has_immediate:
        svc.runner.wake_dispatch()
    return AddMessagesResponse(
        queued=result.queued, rejected=[RejectedItem(id=r.id, reason=r.reason) for r in result.rejected]
    )


@router.post("/commands/run-now", response_model=OkResponse, tags=["commands"], responses=ERRORS)
async def run_now(svc: Services) -> OkResponse:
    """Wake the dispatcher and reporting loops. In test_mode, returns after the triggered cycle finished."""
    await svc.runner.run_now()
    return OkResponse()


@router.post("/commands/suspend", response_model=ActiveResponse, tags=["commands"], responses=ERRORS)
async def suspend(svc: Services) -> ActiveResponse:
    """Stop new sends until activated (survives restarts). Reports still go out."""
    return ActiveResponse(active=await svc.admin.set_active(False))


@router.post("/commands/activate", response_model=ActiveResponse, tags=["commands"], responses=ERRORS)
async def activate(svc: Services) -> ActiveResponse:
    active = await svc.admin.set_active(True)
    svc.runner.wake()
    return ActiveResponse(active=active)


@router.post("/account", response_model=AccountResponse, tags=["accounts"], responses=ERRORS)
async def save_account(body: AccountIn, svc: Services) -> AccountResponse:
    """Create or update an SMTP account. An update without password keeps the stored one."""
    saved = await svc.admin.save_account(to_account(body))
    svc.metrics.know_accounts([saved.id])
    return AccountResponse(account=account_out(saved))


@router.get("/accounts", response_model=AccountsResponse, tags=["accounts"], responses=ERRORS)
async def list_accounts(svc: Services) -> AccountsResponse:
    """All accounts; passwords are never returned."""
    return AccountsResponse(accounts=[account_out(a) for a in await svc.admin.accounts()])


@router.delete(
    "/account/{account_id}",
    response_model=DeleteAccountResponse,
    tags=["accounts"],
    responses={**ERRORS, 404: ERROR, 409: ERROR},
)
async def delete_account(
    account_id: str,
    svc: Services,
    force: Annotated[bool, Query(description="fail the account's unsent messages (they are reported)")] = False,
) -> DeleteAccountResponse:
    try:
        failed = await svc.admin.delete_account(account_id, force)
    except AccountNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except AccountInUse as exc:
        raise HTTPException(409, str(exc)) from None
    if failed:
        svc.metrics.errors.labels(account_id=account_id).inc(failed)
        svc.runner.wake()  # their error reports go out now
    return DeleteAccountResponse(id=account_id, failed_messages=failed)


@router.get("/messages", response_model=MessagesResponse, tags=["messages"], responses=ERRORS)
async def list_messages(
    svc: Services,
    state: Annotated[Literal["queued", "sent", "error"] | None, Query(description="stored state filter")] = None,
    account_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")
    ] = None,
) -> MessagesResponse:
    """Messages in insertion order, a page at a time (keyset pagination: fast at any table size)."""
    try:
        page = await svc.messages.page(MessageStatus(state) if state else None, account_id, limit, cursor)
    except InvalidCursor as exc:
        raise HTTPException(400, str(exc)) from None
    now = svc.clock.now()
    return MessagesResponse(messages=[message_out(r, now) for r in page.records], next_cursor=page.next_cursor)


@router.get(
    "/messages/{message_id}",
    response_model=MessageDetailResponse,
    tags=["messages"],
    responses={**ERRORS, 404: ERROR},
)
async def get_message(message_id: str, svc: Services) -> MessageDetailResponse:
    record = await svc.messages.get(message_id)
    if record is None:
        raise HTTPException(404, f"no message {message_id!r}")
    attempts = await svc.messages.attempts(message_id)
    return MessageDetailResponse(
        message=message_out(record, svc.clock.now()),
        attempts=[AttemptOut(ts=a.ts, outcome=a.outcome.value, code=a.code, detail=a.detail) for a in attempts],
    )


@router.get("/status", response_model=StatusResponse, tags=["operations"], responses=ERRORS)
async def status(svc: Services) -> StatusResponse:
    st = await svc.admin.status()
    c = st.counts
    return StatusResponse(
        active=st.active,
        test_mode=svc.test_mode,
        reporting=svc.reporting,
        accounts=st.accounts,
        queue=QueueOut(queued=c.queued, deferred=c.deferred, sent=c.sent, error=c.error, unreported=c.unreported),
    )


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **ERRORS},
)
async def metrics(svc: Services) -> Response:
    st = await svc.admin.status()
    svc.metrics.know_accounts(a.id for a in await svc.admin.accounts())
    return Response(svc.metrics.render(st.counts.queued), media_type="text/plain; version=0.0.4; charset=utf-8")
