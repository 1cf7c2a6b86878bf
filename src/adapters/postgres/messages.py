"""PostgreSQL MessageStore and DispatchQueue.

claim_due uses FOR UPDATE SKIP LOCKED: two replicas claiming at once never get the same message,
and the lease (available_at) keeps it from being claimed again until it expires.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from adapters.cursor import parse_cursor
from adapters.postgres.database import PostgresDatabase
from adapters.sql.codec import decode_message, encode_message
from adapters.sql.rows import RECORD_COLUMNS, attempt_values, record_from_row
from core.model import (
    Attempt,
    AttemptOutcome,
    Claim,
    Deferred,
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
from ports.dispatch_queue import DispatchQueue
from ports.message_store import MessageStore


class PostgresMessageStore(MessageStore):
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        if not messages:
            return []
        columns: list[list[object]] = [[], [], [], [], [], []]
        for m in messages:
            available = m.deferred_ts if m.deferred_ts is not None else now
            for column, value in zip(
                columns, (m.id, m.account_id, int(m.priority), encode_message(m), available, m.deferred_ts), strict=True
            ):
                column.append(value)
        async with self._db.transaction() as conn:
            inserted = await conn.fetch(
                "INSERT INTO messages"
                " (id, account_id, priority, status, payload, created_ts, available_at, deferred_ts)"
                " SELECT i, a, p, 'queued', pl, $7, av, d"
                " FROM unnest($1::text[], $2::text[], $3::smallint[], $4::text[], $5::float8[], $6::float8[])"
                " AS t(i, a, p, pl, av, d)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                *columns,
                now,
            )
        fresh = {row["id"] for row in inserted}
        return [m.id for m in messages if m.id not in fresh]

    async def get(self, message_id: str) -> MessageRecord | None:
        row = await self._db.pool.fetchrow(f"SELECT {RECORD_COLUMNS} FROM messages WHERE id = $1", message_id)
        return record_from_row(row) if row else None

    async def attempts(self, message_id: str) -> list[Attempt]:
        rows = await self._db.pool.fetch(
            "SELECT ts, outcome, code, detail FROM attempts WHERE message_id = $1 ORDER BY ts, ctid", message_id
        )
        return [Attempt(message_id, r["ts"], AttemptOutcome(r["outcome"]), r["code"], r["detail"]) for r in rows]

    async def page(
        self, status: MessageStatus | None, account_id: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        after = parse_cursor(cursor)
        rows = await self._db.pool.fetch(
            f"SELECT {RECORD_COLUMNS} FROM messages WHERE seq > $1"
            " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR account_id = $3)"
            " ORDER BY seq LIMIT $4",
            after,
            status.value if status else None,
            account_id,
            limit + 1,
        )
        chosen = rows[:limit]
        next_cursor = str(chosen[-1]["seq"]) if len(rows) > limit else None
        return MessagePage(tuple(record_from_row(r) for r in chosen), next_cursor)

    async def counts(self, now: float) -> QueueCounts:
        row = await self._db.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued,"
            " count(*) FILTER (WHERE status = 'queued' AND deferred_ts > $1) AS deferred,"
            " count(*) FILTER (WHERE status = 'sent') AS sent,"
            " count(*) FILTER (WHERE status = 'error') AS error,"
            " count(*) FILTER (WHERE version > reported_version) AS unreported FROM messages",
            now,
        )
        assert row is not None
        return QueueCounts(row["queued"], row["deferred"], row["sent"], row["error"], row["unreported"])


class PostgresDispatchQueue(DispatchQueue):
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def claim_due(self, account_id: str, now: float, limit: int, lease_until: float) -> list[Claim]:
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "WITH c AS (SELECT id, available_at AS due FROM messages"
                " WHERE account_id = $1 AND status = 'queued' AND available_at <= $2"
                " ORDER BY priority, available_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
                " UPDATE messages m SET available_at = $4, lease_until = $4 FROM c WHERE m.id = c.id"
                " RETURNING m.id, m.account_id, m.priority, m.payload, m.attempts, m.first_attempt_ts, c.due, m.seq",
                account_id,
                now,
                limit,
                lease_until,
            )
        ordered = sorted(rows, key=lambda r: (r["priority"], r["due"], r["seq"]))
        return [
            Claim(
                decode_message(r["id"], r["account_id"], r["priority"], r["payload"]),
                r["attempts"],
                r["first_attempt_ts"],
            )
            for r in ordered
        ]

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        sent = [o for o in outcomes if isinstance(o, Sent)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        deferred = [o for o in outcomes if isinstance(o, Deferred)]
        held = [o for o in outcomes if isinstance(o, Held)]
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO attempts (message_id, ts, outcome, code, detail) SELECT $1, $2, $3, $4, $5"
                " WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND status = 'queued')",
                [attempt_values(o) for o in outcomes if not isinstance(o, Held)],
            )
            if held:
                await conn.executemany(
                    "UPDATE messages SET available_at = $1, lease_until = NULL WHERE id = $2 AND status = 'queued'",
                    [(o.until, o.message_id) for o in held],
                )
            if sent:
                await conn.executemany(
                    "UPDATE messages SET status = 'sent', sent_ts = $1, finished_ts = $1, error = NULL, refused = $2,"
                    " attempts = attempts + 1, first_attempt_ts = coalesce(first_attempt_ts, $1),"
                    " version = version + 1, lease_until = NULL WHERE id = $3 AND status = 'queued'",
                    [(o.ts, json.dumps(list(o.refused_recipients)), o.message_id) for o in sent],
                )
                await conn.executemany(
                    "INSERT INTO send_log (account_id, ts) VALUES ($1, $2)", [(o.account_id, o.ts) for o in sent]
                )
            if failed:
                await conn.executemany(
                    "UPDATE messages SET status = 'error', error_ts = $1, finished_ts = $1, error = $2,"
                    " attempts = attempts + 1, first_attempt_ts = coalesce(first_attempt_ts, $1),"
                    " version = version + 1, lease_until = NULL WHERE id = $3 AND status = 'queued'",
                    [(o.ts, o.error, o.message_id) for o in failed],
                )
            if deferred:
                await conn.executemany(
                    "UPDATE messages SET deferred_ts = $1, available_at = $1, error = $2,"
                    " attempts = attempts + $3::int,"
                    " first_attempt_ts = CASE WHEN $3::int = 1"
                    " THEN coalesce(first_attempt_ts, $4) ELSE first_attempt_ts END,"
                    " version = version + 1, lease_until = NULL WHERE id = $5 AND status = 'queued'",
                    [(o.until, o.reason, int(o.counts_as_attempt), o.ts, o.message_id) for o in deferred],
                )

    async def send_history(self, account_id: str, since: float) -> list[float]:
        rows = await self._db.pool.fetch(
            "SELECT ts FROM send_log WHERE account_id = $1 AND ts > $2 ORDER BY ts", account_id, since
        )
        return [row["ts"] for row in rows]

    async def next_due_at(self, now: float) -> float | None:
        value = await self._db.pool.fetchval(
            "SELECT min(available_at) FROM messages WHERE status = 'queued' AND available_at > $1", now
        )
        return float(value) if value is not None else None

    async def orphaned(self, now: float, limit: int) -> list[tuple[str, str]]:
        rows = await self._db.pool.fetch(
            "SELECT m.id, m.account_id FROM messages m WHERE m.status = 'queued'"
            " AND (m.lease_until IS NULL OR m.lease_until <= $1)"
            " AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = m.account_id) ORDER BY m.seq LIMIT $2",
            now,
            limit,
        )
        return [(row["id"], row["account_id"]) for row in rows]
