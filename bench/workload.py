"""The messages the benchmark sends: ~2 KB bodies, pre-encoded before any clock starts."""

from __future__ import annotations

import json
from typing import Any

BODY_BYTES = 2000
_LINE = "The quick brown fox jumps over the lazy dog while asyncmail measures itself. "


def body_text(size: int = BODY_BYTES) -> str:
    """Plain ASCII text of exactly `size` characters in short lines."""
    line = _LINE.rstrip() + "\n"
    return (line * (size // len(line) + 1))[:size]


BODY = body_text()


def message(message_id: str, account_id: str, priority: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": message_id,
        "account_id": account_id,
        "from": "Bench Sender <sender@bench.example>",
        "to": ["rcpt@bench.example"],
        "subject": f"asyncmail bench {message_id}",
        "body": BODY,
    }
    if priority is not None:
        entry["priority"] = priority
    return entry


def message_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(count)]


def encoded_batches(prefix: str, count: int, batch_size: int, account_id: str, priority: str | None) -> list[bytes]:
    """add-messages request bodies for `count` messages, `batch_size` per request."""
    ids = message_ids(prefix, count)
    return [
        json.dumps({"messages": [message(mid, account_id, priority) for mid in ids[i : i + batch_size]]}).encode()
        for i in range(0, count, batch_size)
    ]


def raw_email(size: int = BODY_BYTES) -> bytes:
    """A complete RFC 5322 message of about `size` bytes of body, CRLF line ends, for the python_limit client."""
    headers = (
        "From: Bench Sender <sender@bench.example>\r\n"
        "To: rcpt@bench.example\r\n"
        "Subject: asyncmail bench python_limit\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "Message-ID: <python-limit@bench.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
    )
    return (headers + "\r\n" + body_text(size).replace("\n", "\r\n") + "\r\n").encode()
