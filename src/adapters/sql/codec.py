"""Message payload <-> JSON text, as stored in the messages.payload column."""

from __future__ import annotations

import json
from typing import Any

from core.model import Attachment, ContentType, Message, Priority


def encode_message(message: Message) -> str:
    return json.dumps(
        {
            "from": message.from_addr,
            "to": list(message.to),
            "cc": list(message.cc),
            "bcc": list(message.bcc),
            "reply_to": message.reply_to,
            "return_path": message.return_path,
            "subject": message.subject,
            "body": message.body,
            "html_body": message.html_body,
            "content_type": message.content_type.value,
            "headers": [list(pair) for pair in message.headers],
            "message_id": message.message_id,
            "attachments": [
                {"filename": a.filename, "content": a.content_b64, "mime_type": a.mime_type}
                for a in message.attachments
            ],
            "deferred_ts": message.deferred_ts,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_message(message_id: str, account_id: str, priority: int, payload: str) -> Message:
    data: dict[str, Any] = json.loads(payload)
    return Message(
        id=message_id,
        account_id=account_id,
        from_addr=data["from"],
        to=tuple(data["to"]),
        cc=tuple(data["cc"]),
        bcc=tuple(data["bcc"]),
        reply_to=data["reply_to"],
        return_path=data["return_path"],
        subject=data["subject"],
        body=data["body"],
        html_body=data.get("html_body"),
        content_type=ContentType(data["content_type"]),
        headers=tuple((name, value) for name, value in data["headers"]),
        message_id=data["message_id"],
        attachments=tuple(Attachment(a["filename"], a["content"], a["mime_type"]) for a in data["attachments"]),
        priority=Priority(priority),
        deferred_ts=data["deferred_ts"],
    )
