"""In-memory storage: every storage port over one shared state, for unit tests and test_mode.

State is public (`state.rows`, `state.accounts`, ...) so tests can assert on it; `reset()` empties it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.cursor import parse_cursor
from core.errors import AccountInUse, AccountNotFound
from core.model import (
    Account,
    Attempt,
    AttemptOutcome,
    Claim,
    Deferred,
    DeliveryReport,
    Failed,
    Held,
    Message,
    MessagePage,
    MessageRecord,
    MessageStatus,
    Outcome,
    QueueCounts,
    Sent,
)
from ports.account_store import AccountStore
from ports.dispatch_queue import DispatchQueue
from ports.message_store import MessageStore
from ports.report_queue import ReportQueue
from ports.service_state import ServiceState


@dataclass(slots=True)
class Row:
    seq: int
    record: MessageRecord
    available_at: float
    version: int = 0
    reported_version: int = 0
    lease_until: float | None = None


@dataclass
class MemoryState:
    rows: dict[str, Row] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    send_log: list[tuple[str, float]] = field(default_factory=list)
    active: bool = True
    next_seq: int = 1

    def reset(self) -> None:
        self.rows.clear()
        self.accounts.clear()
        self.attempts.clear()
        self.send_log.clear()
        self.active = True
        self.next_seq = 1


class InMemoryMessageStore(MessageStore):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        existing = [m.id for m in messages if m.id in self.state.rows]
        for message in messages:
            if message.id in self.state.rows:
                continue
            record = MessageRecord(message, MessageStatus.QUEUED, now, deferred_ts=message.deferred_ts)
            available = message.deferred_ts if message.deferred_ts is not None else now
            self.state.rows[message.id] = Row(self.state.next_seq, record, available)
            self.state.next_seq += 1
        return existing

    async def get(self, message_id: str) -> MessageRecord | None:
        row = self.state.rows.get(message_id)
        return row.record if row else None

    async def attempts(self, message_id: str) -> list[Attempt]:
        return [a for a in self.state.attempts if a.message_id == message_id]

    async def page(
        self, status: MessageStatus | None, account_id: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        after = parse_cursor(cursor)
        rows = sorted(
            (
                r
                for r in self.state.rows.values()
                if r.seq > after
                and (status is None or r.record.status is status)
                and (account_id is None or r.record.message.account_id == account_id)
            ),
            key=lambda r: r.seq,
        )
        chosen = rows[:limit]
        next_cursor = str(chosen[-1].seq) if len(rows) > limit else None
        return MessagePage(tuple(r.record for r in chosen), next_cursor)

    async def counts(self, now: float) -> QueueCounts:
        records = [(r.record, r) for r in self.state.rows.values()]
        queued = [rec for rec, _ in records if rec.status is MessageStatus.QUEUED]
        return QueueCounts(
            queued=len(queued),
            deferred=sum(1 for rec in queued if rec.deferred_ts is not None and rec.deferred_ts > now),
            sent=sum(1 for rec, _ in records if rec.status is MessageStatus.SENT),
            error=sum(1 for rec, _ in records if rec.status is MessageStatus.ERROR),
            unreported=sum(1 for _, row in records if row.version > row.reported_version),
        )


class InMemoryDispatchQueue(DispatchQueue):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def claim_due(self, account_id: str, now: float, limit: int, lease_until: float) -> list[Claim]:
        due = sorted(
            (
                r
                for r in self.state.rows.values()
                if r.record.status is MessageStatus.QUEUED
                and r.record.message.account_id == account_id
                and r.available_at <= now
            ),
            key=lambda r: (r.record.message.priority, r.available_at, r.seq),
        )[:limit]
        for row in due:
            row.available_at = row.lease_until = lease_until
        return [Claim(r.record.message, r.record.attempts, r.record.first_attempt_ts) for r in due]

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Sent):
                self.state.send_log.append((outcome.account_id, outcome.ts))  # the mail went out: it counts
            row = self.state.rows.get(outcome.message_id)
            if row is None or row.record.status is not MessageStatus.QUEUED:
                continue
            if isinstance(outcome, Held):
                row.available_at, row.lease_until = outcome.until, None
                continue
            _apply(self.state, row, outcome)

    async def send_history(self, account_id: str, since: float) -> list[float]:
        return [ts for aid, ts in self.state.send_log if aid == account_id and ts > since]

    async def next_due_at(self, now: float) -> float | None:
        future = [
            r.available_at
            for r in self.state.rows.values()
            if r.record.status is MessageStatus.QUEUED and r.available_at > now
        ]
        return min(future, default=None)

    async def orphaned(self, now: float, limit: int) -> list[tuple[str, str]]:
        found = [
            (r.record.id, r.record.message.account_id)
            for r in sorted(self.state.rows.values(), key=lambda r: r.seq)
            if r.record.status is MessageStatus.QUEUED
            and r.record.message.account_id not in self.state.accounts
            and not _leased(r, now)
        ]
        return found[:limit]


class InMemoryReportQueue(ReportQueue):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def pending_reports(self, limit: int) -> list[DeliveryReport]:
        rows = sorted((r for r in self.state.rows.values() if r.version > r.reported_version), key=lambda r: r.seq)
        return [_report(r) for r in rows[:limit]]

    async def mark_reported(self, reports: Sequence[DeliveryReport], now: float) -> int:
        marked = 0
        for report in reports:
            row = self.state.rows.get(report.id)
            if row is not None and row.version == report.version:
                row.reported_version = report.version
                row.record = dataclasses.replace(row.record, reported_ts=now)
                marked += 1
        return marked

    async def purge_finished(self, cutoff: float, require_reported: bool) -> int:
        doomed = [mid for mid, row in self.state.rows.items() if _purgeable(row, cutoff, require_reported)]
        for mid in doomed:
            del self.state.rows[mid]
        gone = set(doomed)
        self.state.attempts[:] = [a for a in self.state.attempts if a.message_id not in gone]
        return len(doomed)

    async def prune_send_history(self, before: float) -> int:
        kept = [(aid, ts) for aid, ts in self.state.send_log if ts >= before]
        pruned = len(self.state.send_log) - len(kept)
        self.state.send_log[:] = kept
        return pruned


class InMemoryAccountStore(AccountStore):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def upsert(self, account: Account) -> Account:
        old = self.state.accounts.get(account.id)
        if old is not None and account.password is None:
            account = dataclasses.replace(account, password=old.password)
        self.state.accounts[account.id] = account
        return account

    async def get(self, account_id: str) -> Account | None:
        return self.state.accounts.get(account_id)

    async def list(self) -> list[Account]:
        return sorted(self.state.accounts.values(), key=lambda a: a.id)

    async def delete(self, account_id: str, force: bool, now: float) -> int:
        if account_id not in self.state.accounts:
            raise AccountNotFound(f"no account {account_id!r}")
        unsent = [
            r
            for r in self.state.rows.values()
            if r.record.message.account_id == account_id and r.record.status is MessageStatus.QUEUED
        ]
        if unsent and not force:
            raise AccountInUse(f"account {account_id!r} has {len(unsent)} unsent messages; use force=true to fail them")
        for row in (r for r in unsent if not _leased(r, now)):
            deleted = Failed(row.record.id, account_id, now, f"account {account_id!r} was deleted")
            _apply(self.state, row, deleted, is_attempt=False)
        del self.state.accounts[account_id]
        return sum(1 for r in unsent if r.record.status is MessageStatus.ERROR)


class InMemoryServiceState(ServiceState):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def is_active(self) -> bool:
        return self.state.active

    async def set_active(self, active: bool) -> None:
        self.state.active = active


def _leased(row: Row, now: float) -> bool:
    return row.lease_until is not None and row.lease_until > now


def _apply(state: MemoryState, row: Row, outcome: Sent | Failed | Deferred, is_attempt: bool = True) -> None:
    record = row.record
    counts = is_attempt and (not isinstance(outcome, Deferred) or outcome.counts_as_attempt)
    attempts = record.attempts + (1 if counts else 0)
    first = record.first_attempt_ts if record.first_attempt_ts is not None or not counts else outcome.ts
    if isinstance(outcome, Sent):
        record = dataclasses.replace(
            record,
            status=MessageStatus.SENT,
            sent_ts=outcome.ts,
            error=None,
            refused_recipients=outcome.refused_recipients,
        )
        state.attempts.append(
            Attempt(outcome.message_id, outcome.ts, AttemptOutcome.SENT, outcome.code, outcome.detail)
        )
    elif isinstance(outcome, Failed):
        record = dataclasses.replace(record, status=MessageStatus.ERROR, error_ts=outcome.ts, error=outcome.error)
        state.attempts.append(Attempt(outcome.message_id, outcome.ts, outcome.outcome, outcome.code, outcome.error))
    else:
        record = dataclasses.replace(record, deferred_ts=outcome.until, error=outcome.reason)
        row.available_at = outcome.until
        state.attempts.append(Attempt(outcome.message_id, outcome.ts, outcome.outcome, outcome.code, outcome.reason))
    row.record = dataclasses.replace(record, attempts=attempts, first_attempt_ts=first)
    row.lease_until = None
    row.version += 1


def _report(row: Row) -> DeliveryReport:
    record = row.record
    queued = record.status is MessageStatus.QUEUED
    return DeliveryReport(
        id=record.id,
        account_id=record.message.account_id,
        priority=int(record.message.priority),
        sent_ts=record.sent_ts,
        error_ts=record.error_ts,
        error=record.error if record.status is MessageStatus.ERROR else None,
        deferred_ts=record.deferred_ts if queued else None,
        version=row.version,
        refused_recipients=record.refused_recipients,
    )


def _purgeable(row: Row, cutoff: float, require_reported: bool) -> bool:
    record = row.record
    if record.status is MessageStatus.QUEUED:
        return False
    finished = record.sent_ts if record.sent_ts is not None else record.error_ts
    if finished is None or finished >= cutoff:
        return False
    if not require_reported:
        return True
    return row.version == row.reported_version and record.reported_ts is not None and record.reported_ts < cutoff
