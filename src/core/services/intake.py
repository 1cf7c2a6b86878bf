"""Intake: validate a batch and enqueue what is valid, with a reason for each rejection."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

from core.model import Message, Priority, Rejection
from core.policies.validation import IntakeLimits, message_problem
from ports.account_store import AccountStore
from ports.clock import Clock
from ports.message_store import MessageStore


@dataclass(frozen=True, slots=True)
class IntakeResult:
    queued: int
    rejected: tuple[Rejection, ...]
    has_immediate: bool


class IntakeService:
    def __init__(self, messages: MessageStore, accounts: AccountStore, clock: Clock, limits: IntakeLimits) -> None:
        self._messages = messages
        self._accounts = accounts
        self._clock = clock
        self._limits = limits

    async def add(self, candidates: Sequence[Message | Rejection]) -> IntakeResult:
        """Enqueue the valid messages of a batch. One bad entry never blocks the others.

        `candidates` holds a Rejection where the caller could not even build a Message.
        Ids already stored are rejected as duplicates, so a re-posted batch never sends twice.
        """
        known_accounts = {account.id for account in await self._accounts.list()}
        seen: set[str] = set()
        accepted: list[Message] = []
        rejected: list[Rejection] = []
        for candidate in candidates:
            if isinstance(candidate, Rejection):
                rejected.append(candidate)
                continue
            reason = self._problem(candidate, known_accounts, seen)
            if reason:
                rejected.append(Rejection(candidate.id or None, reason))
                continue
            seen.add(candidate.id)
            accepted.append(candidate if candidate.message_id else with_message_id(candidate))
        already_stored = set(await self._messages.enqueue(accepted, self._clock.now())) if accepted else set()
        rejected.extend(
            Rejection(mid, "duplicate id: a message with this id is already stored") for mid in sorted(already_stored)
        )
        fresh = [m for m in accepted if m.id not in already_stored]
        return IntakeResult(
            queued=len(fresh),
            rejected=tuple(rejected),
            has_immediate=any(m.priority is Priority.IMMEDIATE for m in fresh),
        )

    def _problem(self, message: Message, known_accounts: set[str], seen: set[str]) -> str | None:
        reason = message_problem(message, self._limits)
        if reason:
            return reason
        if message.account_id not in known_accounts:
            return f"unknown account {message.account_id!r}"
        if message.id in seen:
            return "duplicate id: repeated in this batch"
        return None


def with_message_id(message: Message) -> Message:
    """Give the message its Message-ID at intake: stored with it, so every resend carries the same one
    (receivers can drop a duplicate), and unique even if the id is reused after a purge."""
    return dataclasses.replace(message, message_id=new_message_id(message.from_addr))


def new_message_id(from_addr: str) -> str:
    return f"<{os.urandom(16).hex()}@{_id_domain(from_addr.strip().rstrip('>').rpartition('@')[2])}>"


@functools.lru_cache(maxsize=1024)
def _id_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii") if domain else "asyncmail.invalid"
    except UnicodeError:
        return "asyncmail.invalid"
