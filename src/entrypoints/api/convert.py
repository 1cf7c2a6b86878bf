"""HTTP payloads <-> core values."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import Any

from pydantic import ValidationError

from core.errors import InvalidPriority
from core.model import (
    Account,
    Attachment,
    ContentType,
    LimitBehavior,
    Message,
    MessageRecord,
    MessageStatus,
    Priority,
    RateLimits,
    Rejection,
    StartTls,
)
from core.policies.priority import parse_priority
from core.services.intake import new_message_id
from entrypoints.api.schemas import AccountIn, AccountOut, AttachmentOut, MessageOut, MessagePayload


def to_message(entry: Any, default_priority: Priority) -> Message | Rejection:
    """Build a core Message from one add-messages entry, or the Rejection that says why not."""
    if not isinstance(entry, dict):
        return Rejection(None, "entry must be a JSON object")
    raw_id = entry.get("id")
    entry_id = raw_id if isinstance(raw_id, str) and raw_id else None
    try:
        payload = MessagePayload.model_validate(entry)
    except ValidationError as exc:
        return Rejection(entry_id, _first_problem(exc))
    try:
        priority = default_priority if payload.priority is None else parse_priority(payload.priority)
    except InvalidPriority as exc:
        return Rejection(entry_id, str(exc))
    return Message(
        id=payload.id,
        account_id=payload.account_id,
        from_addr=payload.from_,
        to=_addresses(payload.to),
        cc=_addresses(payload.cc),
        bcc=_addresses(payload.bcc),
        reply_to=payload.reply_to,
        return_path=payload.return_path,
        subject=payload.subject,
        body=payload.body,
        html_body=payload.html_body,
        content_type=ContentType(payload.content_type),
        headers=tuple(payload.headers.items()),
        message_id=payload.message_id or new_message_id(payload.from_),
        attachments=tuple(
            Attachment(
                a.filename, a.content, a.mime_type or mimetypes.guess_type(a.filename)[0] or "application/octet-stream"
            )
            for a in payload.attachments
        ),
        priority=priority,
        deferred_ts=payload.deferred_ts,
    )


def _addresses(value: list[str] | str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    return tuple(item for item in (i.strip() for i in items) if item)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "entry"
    if error["type"] == "missing":
        return f"missing {field}"
    if error["type"] == "extra_forbidden":
        return f"unknown field {field!r}"
    return f"{field}: {error['msg']}"


def to_account(body: AccountIn) -> Account:
    return Account(
        id=body.id,
        host=body.host,
        port=body.port,
        user=body.user,
        password=body.password.get_secret_value() if body.password is not None else None,
        use_tls=body.use_tls,
        limits=RateLimits(body.limit_per_minute, body.limit_per_hour, body.limit_per_day),
        limit_behavior=LimitBehavior(body.limit_behavior),
        batch_size=body.batch_size,
        starttls=StartTls(body.starttls),
        allow_insecure_auth=body.allow_insecure_auth,
        max_connections=body.max_connections,
        ttl_seconds=body.ttl,
    )


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        host=account.host,
        port=account.port,
        user=account.user,
        has_password=bool(account.password),
        use_tls=account.use_tls,
        limit_per_minute=account.limits.per_minute,
        limit_per_hour=account.limits.per_hour,
        limit_per_day=account.limits.per_day,
        limit_behavior=account.limit_behavior.value,
        batch_size=account.batch_size,
        starttls=account.starttls.value,
        allow_insecure_auth=account.allow_insecure_auth,
        max_connections=account.max_connections,
        ttl=account.ttl_seconds,
    )


def state_of(record: MessageRecord, now: float) -> str:
    if record.status is MessageStatus.QUEUED and record.deferred_ts is not None and record.deferred_ts > now:
        return "deferred"
    return record.status.value


def message_out(record: MessageRecord, now: float) -> MessageOut:
    m = record.message
    return MessageOut.model_validate(
        {
            "id": m.id,
            "account_id": m.account_id,
            "state": state_of(record, now),
            "from": m.from_addr,
            "to": list(m.to),
            "cc": list(m.cc),
            "bcc": list(m.bcc),
            "reply_to": m.reply_to,
            "return_path": m.return_path,
            "subject": m.subject,
            "body": m.body,
            "content_type": m.content_type.value,
            "html_body": m.html_body,
            "headers": dict(m.headers),
            "message_id": m.message_id,
            "attachments": [
                AttachmentOut(filename=a.filename, mime_type=a.mime_type, size=_decoded_size(a.content_b64))
                for a in m.attachments
            ],
            "priority": int(m.priority),
            "created_ts": record.created_ts,
            "deferred_ts": record.deferred_ts,
            "sent_ts": record.sent_ts,
            "error_ts": record.error_ts,
            "error": record.error,
            "reported_ts": record.reported_ts,
            "attempts": record.attempts,
            "refused_recipients": list(record.refused_recipients),
        }
    )


def _decoded_size(content_b64: str) -> int:
    try:
        return len(base64.b64decode(content_b64))
    except (binascii.Error, ValueError):
        return 0
