"""Unit-test wiring: every in-memory adapter over one MemoryState and a FrozenClock (see conftest.world)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.memory.clock import FrozenClock
from adapters.memory.mail_sender import RecordingMailSender
from adapters.memory.report_sink import RecordingReportSink
from adapters.memory.store import (
    InMemoryAccountStore,
    InMemoryDispatchQueue,
    InMemoryMessageStore,
    InMemoryReportQueue,
    InMemoryServiceState,
    MemoryState,
)
from core.model import Account, Message, MessageRecord
from core.services.dispatch import DispatchConfig, DispatchService
from ports.mail_sender import MailSender

T0 = 1_800_000_000.0


def make_message(message_id: str = "m1", account_id: str = "acc", **fields: Any) -> Message:
    values: dict[str, Any] = {"from_addr": "Sender <sender@example.com>", "to": ("rcpt@example.com",)}
    values.update(fields)
    return Message(id=message_id, account_id=account_id, **values)


@dataclass
class World:
    """The in-memory hexagon: public state to assert on, services built on demand."""

    state: MemoryState = field(default_factory=MemoryState)
    clock: FrozenClock = field(default_factory=lambda: FrozenClock(T0))

    t0: float = T0

    def __post_init__(self) -> None:
        self.messages = InMemoryMessageStore(self.state)
        self.queue = InMemoryDispatchQueue(self.state)
        self.reports = InMemoryReportQueue(self.state)
        self.accounts = InMemoryAccountStore(self.state)
        self.service_state = InMemoryServiceState(self.state)
        self.sender = RecordingMailSender(self.clock)
        self.sink = RecordingReportSink()

    @staticmethod
    def message(message_id: str = "m1", account_id: str = "acc", **fields: Any) -> Message:
        return make_message(message_id, account_id, **fields)

    async def add_account(self, account_id: str = "acc", **fields: Any) -> Account:
        return await self.accounts.upsert(Account(id=account_id, host="smtp.example.com", **fields))

    async def enqueue(self, *messages: Message) -> None:
        duplicates = await self.messages.enqueue(messages, self.clock.now())
        assert duplicates == []

    async def record(self, message_id: str) -> MessageRecord:
        record = await self.messages.get(message_id)
        assert record is not None, f"no stored message {message_id!r}"
        return record

    def dispatcher(
        self,
        config: DispatchConfig | None = None,
        sender: MailSender | None = None,
        jitter: Callable[[], float] = lambda: 0.5,
    ) -> DispatchService:
        return DispatchService(
            self.queue,
            self.accounts,
            self.service_state,
            sender or self.sender,
            self.clock,
            config or DispatchConfig(),
            jitter=jitter,
        )

    def sent_ids(self) -> list[str]:
        return [mail.message.id for mail in self.sender.sent]
