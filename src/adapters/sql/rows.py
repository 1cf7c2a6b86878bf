"""Rows of the SQL backends (SQLite, PostgreSQL) <-> domain values.

Both drivers' rows are read by column name; the schemas name columns alike (except the account's
user column: `user` in SQLite, `username` in PostgreSQL).
"""

from __future__ import annotations

import json
from typing import Any

from adapters.secret_box import SecretBox
from adapters.sql.codec import decode_message
from core.model import (
    Account,
    AttemptOutcome,
    Deferred,
    DeliveryReport,
    Failed,
    LimitBehavior,
    MessageRecord,
    MessageStatus,
    RateLimits,
    Sent,
    StartTls,
)

RECORD_COLUMNS = (
    "seq, id, account_id, priority, status, payload, created_ts, deferred_ts, sent_ts, error_ts, error, "
    "reported_ts, attempts, first_attempt_ts, refused"
)
REPORT_COLUMNS = "id, account_id, priority, status, sent_ts, error_ts, error, deferred_ts, version, refused"


def record_from_row(row: Any) -> MessageRecord:
    return MessageRecord(
        message=decode_message(row["id"], row["account_id"], row["priority"], row["payload"]),
        status=MessageStatus(row["status"]),
        created_ts=row["created_ts"],
        deferred_ts=row["deferred_ts"],
        sent_ts=row["sent_ts"],
        error_ts=row["error_ts"],
        error=row["error"],
        reported_ts=row["reported_ts"],
        attempts=row["attempts"],
        first_attempt_ts=row["first_attempt_ts"],
        refused_recipients=tuple(json.loads(row["refused"])) if row["refused"] else (),
    )


def report_from_row(row: Any) -> DeliveryReport:
    """The report of a row's current state: an error only when errored, deferred_ts only while queued."""
    return DeliveryReport(
        id=row["id"],
        account_id=row["account_id"],
        priority=row["priority"],
        sent_ts=row["sent_ts"],
        error_ts=row["error_ts"],
        error=row["error"] if row["status"] == "error" else None,
        deferred_ts=row["deferred_ts"] if row["status"] == "queued" else None,
        version=row["version"],
        refused_recipients=tuple(json.loads(row["refused"])) if row["refused"] else (),
    )


def attempt_values(outcome: Sent | Failed | Deferred) -> tuple[str, float, str, int | None, str]:
    """(message_id, ts, outcome, code, detail) of the attempt an outcome records (Held records none)."""
    if isinstance(outcome, Sent):
        return (outcome.message_id, outcome.ts, AttemptOutcome.SENT.value, outcome.code, outcome.detail)
    if isinstance(outcome, Failed):
        return (outcome.message_id, outcome.ts, outcome.outcome.value, outcome.code, outcome.error)
    return (outcome.message_id, outcome.ts, outcome.outcome.value, outcome.code, outcome.reason)


def account_from_row(row: Any, box: SecretBox, user_column: str) -> Account:
    return Account(
        id=row["id"],
        host=row["host"],
        port=row["port"],
        user=row[user_column],
        password=box.open(row["password"]) if row["password"] is not None else None,
        use_tls=bool(row["use_tls"]),
        limits=RateLimits(row["per_minute"], row["per_hour"], row["per_day"]),
        limit_behavior=LimitBehavior(row["limit_behavior"]),
        batch_size=row["batch_size"],
        starttls=StartTls(row["starttls"]),
        allow_insecure_auth=bool(row["allow_insecure_auth"]),
        max_connections=row["max_connections"],
        ttl_seconds=row["ttl_seconds"],
    )
