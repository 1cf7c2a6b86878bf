"""Domain values of asyncmail: frozen, typed, free of I/O.

Timestamps are POSIX seconds as floats; the Clock port is their only source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Lower sends first. Clients may name a priority or give its number."""

    IMMEDIATE = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3


class ContentType(StrEnum):
    PLAIN = "plain"
    HTML = "html"


class MessageStatus(StrEnum):
    """Stored state. A queued message whose deferred_ts is in the future is 'deferred'."""

    QUEUED = "queued"
    SENT = "sent"
    ERROR = "error"


class StartTls(StrEnum):
    """STARTTLS on a plain connection: used when offered, required, or never attempted."""

    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    OFF = "off"


class LimitBehavior(StrEnum):
    DEFER = "defer"
    REJECT = "reject"


class AttemptOutcome(StrEnum):
    SENT = "sent"
    TEMPORARY_FAILURE = "temporary_failure"
    PERMANENT_FAILURE = "permanent_failure"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_b64: str
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Message:
    """What the application asked to send (the add-messages payload, validated)."""

    id: str
    account_id: str
    from_addr: str
    to: tuple[str, ...]
    subject: str = ""
    body: str = ""
    content_type: ContentType = ContentType.PLAIN
    html_body: str | None = None  # with a plain body: sent as multipart/alternative
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: str | None = None
    return_path: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    message_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    priority: Priority = Priority.MEDIUM
    deferred_ts: float | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message with its lifecycle."""

    message: Message
    status: MessageStatus
    created_ts: float
    deferred_ts: float | None = None
    sent_ts: float | None = None
    error_ts: float | None = None
    error: str | None = None
    reported_ts: float | None = None
    attempts: int = 0
    first_attempt_ts: float | None = None
    refused_recipients: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.message.id


@dataclass(frozen=True, slots=True)
class Attempt:
    message_id: str
    ts: float
    outcome: AttemptOutcome
    code: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Maximum sends per sliding window; None means unlimited."""

    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None

    def windows(self) -> tuple[tuple[float, int], ...]:
        """(window length in seconds, limit) for each configured limit."""
        pairs = ((60.0, self.per_minute), (3600.0, self.per_hour), (86400.0, self.per_day))
        return tuple((seconds, limit) for seconds, limit in pairs if limit is not None)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # implicit TLS from the first byte (port 465 style)
    limits: RateLimits = RateLimits()
    limit_behavior: LimitBehavior = LimitBehavior.DEFER
    batch_size: int | None = None
    starttls: StartTls = StartTls.OPPORTUNISTIC
    allow_insecure_auth: bool = False  # send credentials over an unencrypted connection
    max_connections: int = 4
    ttl_seconds: float = 300.0  # idle lifetime of a pooled connection


@dataclass(frozen=True, slots=True)
class Claim:
    """A message taken for sending; `attempts` counts earlier tries."""

    message: Message
    attempts: int
    first_attempt_ts: float | None


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    account_id: str
    ts: float
    refused_recipients: tuple[str, ...] = ()
    code: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    message_id: str
    account_id: str
    ts: float
    error: str
    code: int | None = None
    outcome: AttemptOutcome = AttemptOutcome.PERMANENT_FAILURE


@dataclass(frozen=True, slots=True)
class Deferred:
    message_id: str
    account_id: str
    ts: float
    until: float
    reason: str
    code: int | None = None
    outcome: AttemptOutcome = AttemptOutcome.TEMPORARY_FAILURE
    counts_as_attempt: bool = True


@dataclass(frozen=True, slots=True)
class Held:
    """Not tried: the account's rate limit holds the message back until `until` (its own slot).

    Not a state change: no attempt, no report; the message stays queued, just not claimable before then.
    """

    message_id: str
    account_id: str
    ts: float
    until: float


Outcome = Sent | Failed | Deferred | Held


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One item of a delivery_report; `version` lets the store acknowledge exactly what was sent."""

    id: str
    account_id: str
    priority: int
    sent_ts: float | None
    error_ts: float | None
    error: str | None
    deferred_ts: float | None
    version: int
    refused_recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportAck:
    """What the receiver said back; summary is None when its reply had none."""

    summary: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int = 0
    deferred: int = 0
    sent: int = 0
    error: int = 0
    unreported: int = 0


@dataclass(frozen=True, slots=True)
class MessagePage:
    records: tuple[MessageRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Rejection:
    id: str | None
    reason: str
