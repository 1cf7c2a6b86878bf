"""Recording MailSender: builds each message like the real one, keeps it, sends nothing.

Tests and test_mode read `sent`; `fail_next()` scripts failures; `reset()` clears both.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from adapters.smtp.builder import envelope_for, message_bytes
from core.model import Account, Message
from ports.clock import Clock
from ports.mail_sender import MailSender, SendError, SendReceipt


@dataclass(frozen=True, slots=True)
class SentMail:
    account_id: str
    message: Message
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    ts: float


class RecordingMailSender(MailSender):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.sent: list[SentMail] = []
        self._failures: list[SendError] = []
        self.closed = False

    def fail_next(self, *errors: SendError) -> None:
        """The next sends raise these errors, one each, in order."""
        self._failures.extend(errors)

    def reset(self) -> None:
        self.sent.clear()
        self._failures.clear()

    async def send(self, account: Account, message: Message) -> SendReceipt:
        now = self._clock.now()
        data = message_bytes(message, now)
        if self._failures:
            raise self._failures.pop(0)
        envelope = envelope_for(message)
        self.sent.append(SentMail(account.id, message, envelope.sender, envelope.recipients, data, now))
        return SendReceipt(250, "OK (recorded, not sent)")

    async def close_idle(self, now: float, account_ids: Collection[str]) -> None:
        return None  # nothing is ever open

    async def close(self) -> None:
        self.closed = True
