"""MailSender port: hand one message to an account's SMTP server."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from core.model import Account, Message


def storable(text: str) -> str:
    """Server text as it can be stored and reported: valid UTF-8, no NUL (servers send any bytes)."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


class SendError(Exception):
    """Sending failed. `detail` is always storable text."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        detail = storable(detail)
        super().__init__(detail)
        self.detail = detail
        self.code = code

    def __str__(self) -> str:
        return f"{self.code} {self.detail}" if self.code else self.detail


class TransientSendError(SendError):
    """Worth retrying later: connection trouble, timeouts, 4xx replies."""

    def __init__(self, detail: str, code: int | None = None, throttled: bool = False) -> None:
        super().__init__(detail, code)
        self.throttled = throttled


class PermanentSendError(SendError):
    """Retrying will not help: 5xx replies, every recipient refused, authentication refused."""


@dataclass(frozen=True, slots=True)
class SendReceipt:
    code: int = 250
    detail: str = ""
    refused: dict[str, str] = field(default_factory=dict)


class MailSender(Protocol):
    async def send(self, account: Account, message: Message) -> SendReceipt:
        """Deliver to the account's server. Raises TransientSendError or PermanentSendError."""
        ...

    async def close_idle(self, now: float, account_ids: Collection[str]) -> None:
        """Close connections idle past their account's lifetime, and those of accounts not listed."""
        ...

    async def close(self) -> None:
        """Close every open connection."""
        ...
