"""Operator actions: accounts, suspend/activate, status."""

from __future__ import annotations

from dataclasses import dataclass

from core.model import Account, QueueCounts
from ports.account_store import AccountStore
from ports.clock import Clock
from ports.message_store import MessageStore
from ports.service_state import ServiceState


@dataclass(frozen=True, slots=True)
class Status:
    active: bool
    counts: QueueCounts
    accounts: int


class AdminService:
    def __init__(self, accounts: AccountStore, messages: MessageStore, state: ServiceState, clock: Clock) -> None:
        self._accounts = accounts
        self._messages = messages
        self._state = state
        self._clock = clock

    async def save_account(self, account: Account) -> Account:
        return await self._accounts.upsert(account)

    async def accounts(self) -> list[Account]:
        return await self._accounts.list()

    async def delete_account(self, account_id: str, force: bool) -> int:
        """Returns how many unsent messages were failed (only with force)."""
        return await self._accounts.delete(account_id, force, self._clock.now())

    async def set_active(self, active: bool) -> bool:
        await self._state.set_active(active)
        return active

    async def status(self) -> Status:
        return Status(
            active=await self._state.is_active(),
            counts=await self._messages.counts(self._clock.now()),
            accounts=len(await self._accounts.list()),
        )
