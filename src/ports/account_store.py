"""AccountStore port: SMTP accounts."""

from __future__ import annotations

from typing import Protocol

from core.model import Account


class AccountStore(Protocol):
    async def upsert(self, account: Account) -> Account:
        """Create or replace; a None password on update keeps the stored one. Returns what is stored."""
        ...

    async def get(self, account_id: str) -> Account | None: ...

    async def list(self) -> list[Account]: ...

    async def delete(self, account_id: str, force: bool, now: float) -> int:
        """Delete the account. Raises AccountNotFound, or AccountInUse when it has unsent messages
        and not `force`; with `force` those messages end as errors (to be reported). Messages being
        sent right now (leased) are left to their outcome; if none comes, the orphan sweep fails
        them once their lease ends. Returns how many were failed now."""
        ...
