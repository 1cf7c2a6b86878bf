"""MessageStore port: intake and inspection of stored messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.model import Attempt, Message, MessagePage, MessageRecord, MessageStatus, QueueCounts


class InvalidCursor(ValueError):
    """The pagination cursor is not one this store issued."""


class MessageStore(Protocol):
    async def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        """Store new messages atomically; ids already stored are skipped and returned, never replaced."""
        ...

    async def get(self, message_id: str) -> MessageRecord | None: ...

    async def attempts(self, message_id: str) -> list[Attempt]:
        """Every recorded delivery attempt of the message, oldest first."""
        ...

    async def page(
        self, status: MessageStatus | None, account_id: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        """Messages in insertion order after `cursor` (an opaque token from a previous page)."""
        ...

    async def counts(self, now: float) -> QueueCounts: ...
