"""HTTP request and response schemas. Field names follow the seed's API reference."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictInt, StrictStr


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AttachmentIn(Strict):
    filename: str
    content: str = Field(description="file content, base64")
    mime_type: str | None = Field(None, description="default: guessed from filename")


class MessagePayload(Strict):
    """One entry of add-messages. Unknown fields are rejected (per entry, with a reason)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    id: str
    account_id: str
    from_: str = Field(alias="from")
    to: list[str] | str
    cc: list[str] | str = []
    bcc: list[str] | str = []
    reply_to: str | None = None
    return_path: str | None = None
    subject: str = ""
    body: str = ""
    content_type: Literal["plain", "html"] = "plain"
    html_body: str | None = Field(None, description="HTML alternative to a plain body (multipart/alternative)")
    headers: dict[str, str] = {}
    message_id: str | None = None
    attachments: list[AttachmentIn] = []
    priority: int | str | None = Field(None, description="immediate|high|medium|low or 0-3")
    deferred_ts: float | None = Field(None, description="POSIX seconds; not sent before this time")


class AddMessagesRequest(Strict):
    messages: list[Any] = Field(
        json_schema_extra={"items": {"$ref": "#/components/schemas/MessagePayload"}},
        description="entries are validated one by one; a bad entry is rejected alone",
    )
    default_priority: StrictInt | StrictStr | None = None


class RejectedItem(BaseModel):
    id: str | None
    reason: str


class AddMessagesResponse(BaseModel):
    ok: bool = True
    queued: int
    rejected: list[RejectedItem]


class ActiveResponse(BaseModel):
    ok: bool = True
    active: bool


class OkResponse(BaseModel):
    ok: bool = True


class AccountIn(Strict):
    id: str = Field(min_length=1, max_length=255)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(587, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = Field(None, description="omit on update to keep the stored one")
    use_tls: StrictBool = Field(False, description="implicit TLS (port 465 style)")
    limit_per_minute: int | None = Field(None, ge=1)
    limit_per_hour: int | None = Field(None, ge=1)
    limit_per_day: int | None = Field(None, ge=1)
    limit_behavior: Literal["defer", "reject"] = "defer"
    batch_size: int | None = Field(None, ge=1, le=10_000)
    starttls: Literal["opportunistic", "required", "off"] = Field(
        "opportunistic", description="on a plain connection: use STARTTLS when offered, require it, or never"
    )
    allow_insecure_auth: StrictBool = Field(False, description="allow AUTH over an unencrypted connection")
    max_connections: int = Field(4, ge=1, le=64, description="pooled SMTP connections to this server")
    ttl: float = Field(300.0, gt=0, le=86_400, description="seconds an idle pooled connection is kept")


class AccountOut(BaseModel):
    id: str
    host: str
    port: int
    user: str | None
    has_password: bool
    use_tls: bool
    limit_per_minute: int | None
    limit_per_hour: int | None
    limit_per_day: int | None
    limit_behavior: str
    batch_size: int | None
    starttls: str
    allow_insecure_auth: bool
    max_connections: int
    ttl: float


class AccountResponse(BaseModel):
    ok: bool = True
    account: AccountOut


class AccountsResponse(BaseModel):
    ok: bool = True
    accounts: list[AccountOut]


class DeleteAccountResponse(BaseModel):
    ok: bool = True
    id: str
    failed_messages: int


class AttachmentOut(BaseModel):
    filename: str
    mime_type: str
    size: int


class AttemptOut(BaseModel):
    ts: float
    outcome: str
    code: int | None
    detail: str


class MessageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    account_id: str
    state: Literal["queued", "deferred", "sent", "error"]
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str | None
    return_path: str | None
    subject: str
    body: str
    content_type: str
    html_body: str | None
    headers: dict[str, str]
    message_id: str | None
    attachments: list[AttachmentOut]
    priority: int
    created_ts: float
    deferred_ts: float | None
    sent_ts: float | None
    error_ts: float | None
    error: str | None
    reported_ts: float | None
    attempts: int
    refused_recipients: list[str]


class MessagesResponse(BaseModel):
    ok: bool = True
    messages: list[MessageOut]
    next_cursor: str | None


class MessageDetailResponse(BaseModel):
    ok: bool = True
    message: MessageOut
    attempts: list[AttemptOut]


class QueueOut(BaseModel):
    queued: int
    deferred: int
    sent: int
    error: int
    unreported: int


class StatusResponse(BaseModel):
    ok: bool = True
    active: bool
    test_mode: bool
    reporting: Literal["httpx", "memory", "off"]
    accounts: int
    queue: QueueOut


class ErrorResponse(BaseModel):
    ok: bool = False
    detail: str


ERROR = {"model": ErrorResponse}
# Documented on every route: token refused, body too large, request not valid.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {401: ERROR, 413: ERROR, 422: ERROR}
