"""SQLite MessageStore and DispatchQueue."""

from __future__ import annotations

import json
from collections.abc import Sequence

import aiosqlite

from adapters.cursor import parse_cursor
from adapters.sql.codec import decode_message, encode_message
from adapters.sql.rows import RECORD_COLUMNS, attempt_values, record_from_row
from adapters.sqlite.database import SqliteDatabase
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


class SqliteMessageStore(MessageStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        rows = [
            (
                m.id,
                m.account_id,
                int(m.priority),
                encode_message(m),
                now,
                m.deferred_ts if m.deferred_ts is not None else now,
                m.deferred_ts,
            )
            for m in messages
        ]
        async with self._db.transaction() as conn:
            existing = await _existing_ids(conn, [m.id for m in messages])
            await conn.executemany(
                "INSERT INTO messages (id, account_id, priority, status, payload, created_ts, available_at,"
                " deferred_ts) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                [row for row in rows if row[0] not in existing],
            )
        return [m.id for m in messages if m.id in existing]

    async def get(self, message_id: str) -> MessageRecord | None:
        async with (
            self._db.read() as conn,
            conn.execute(f"SELECT {RECORD_COLUMNS} FROM messages WHERE id = ?", (message_id,)) as cursor,
        ):
            row = await cursor.fetchone()
        return record_from_row(row) if row else None

    async def attempts(self, message_id: str) -> list[Attempt]:
        async with (
            self._db.read() as conn,
            conn.execute(
                "SELECT ts, outcome, code, detail FROM attempts WHERE message_id = ? ORDER BY ts, rowid", (message_id,)
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [Attempt(message_id, r["ts"], AttemptOutcome(r["outcome"]), r["code"], r["detail"]) for r in rows]

    async def page(
        self, status: MessageStatus | None, account_id: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        after = parse_cursor(cursor)
        where: list[str] = ["seq > ?"]
        params: list[object] = [after]
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if account_id is not None:
            where.append("account_id = ?")
            params.append(account_id)
        sql = f"SELECT {RECORD_COLUMNS} FROM messages WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        async with self._db.read() as conn, conn.execute(sql, (*params, limit + 1)) as cur:
            rows = list(await cur.fetchall())
        chosen = rows[:limit]
        next_cursor = str(chosen[-1]["seq"]) if len(rows) > limit else None
        return MessagePage(tuple(record_from_row(r) for r in chosen), next_cursor)

    async def counts(self, now: float) -> QueueCounts:
        async with self._db.read() as conn:
            async with conn.execute("SELECT status, n FROM message_counts") as cur:
                by_status = {row[0]: row[1] for row in await cur.fetchall()}
            async with conn.execute(
                "SELECT count(*) FROM messages WHERE status = 'queued' AND deferred_ts > ?", (now,)
            ) as cur:
                deferred = (await cur.fetchone() or (0,))[0]
            async with conn.execute("SELECT count(*) FROM messages WHERE version > reported_version") as cur:
                unreported = (await cur.fetchone() or (0,))[0]
        return QueueCounts(
            queued=by_status.get("queued", 0),
            deferred=deferred,
            sent=by_status.get("sent", 0),
            error=by_status.get("error", 0),
            unreported=unreported,
        )


class SqliteDispatchQueue(DispatchQueue):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def claim_due(self, account_id: str, now: float, limit: int, lease_until: float) -> list[Claim]:
        rows: list[aiosqlite.Row] = []
        async with self._db.transaction() as conn:
            # One indexed query per priority level keeps the scan bounded by `limit`.
            for priority in range(4):
                if len(rows) >= limit:
                    break
                async with conn.execute(
                    "SELECT id, account_id, priority, payload, attempts, first_attempt_ts FROM messages"
                    " WHERE account_id = ? AND priority = ? AND status = 'queued' AND available_at <= ?"
                    " ORDER BY available_at, seq LIMIT ?",
                    (account_id, priority, now, limit - len(rows)),
                ) as cur:
                    rows.extend(await cur.fetchall())
            await conn.executemany(
                "UPDATE messages SET available_at = ?, lease_until = ? WHERE id = ?",
                [(lease_until, lease_until, r["id"]) for r in rows],
            )
        return [
            Claim(
                decode_message(r["id"], r["account_id"], r["priority"], r["payload"]),
                r["attempts"],
                r["first_attempt_ts"],
            )
            for r in rows
        ]

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        statements = _outcome_statements(outcomes)
        async with self._db.transaction() as conn:
            for sql, rows in statements:  # only non-empty statements: each one is a hop to the db thread
                await conn.executemany(sql, rows)

    async def send_history(self, account_id: str, since: float) -> list[float]:
        async with (
            self._db.read() as conn,
            conn.execute(
                "SELECT ts FROM send_log WHERE account_id = ? AND ts > ? ORDER BY ts", (account_id, since)
            ) as cur,
        ):
            return [row[0] for row in await cur.fetchall()]

    async def next_due_at(self, now: float) -> float | None:
        async with (
            self._db.read() as conn,
            conn.execute(
                "SELECT min(available_at) FROM messages WHERE status = 'queued' AND available_at > ?", (now,)
            ) as cur,
        ):
            row = await cur.fetchone()
        return row[0] if row else None

    async def orphaned(self, now: float, limit: int) -> list[tuple[str, str]]:
        async with (
            self._db.read() as conn,
            conn.execute(
                "SELECT m.id, m.account_id FROM messages m WHERE m.status = 'queued'"
                " AND (m.lease_until IS NULL OR m.lease_until <= ?)"
                " AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = m.account_id) ORDER BY m.seq LIMIT ?",
                (now, limit),
            ) as cur,
        ):
            return [(row[0], row[1]) for row in await cur.fetchall()]


_SENT_SQL = (
    "UPDATE messages SET status = 'sent', sent_ts = ?, finished_ts = ?, error = NULL, refused = ?,"
    " attempts = attempts + 1, first_attempt_ts = coalesce(first_attempt_ts, ?), version = version + 1,"
    " lease_until = NULL"
    " WHERE id = ? AND status = 'queued'"
)
_FAILED_SQL = (
    "UPDATE messages SET status = 'error', error_ts = ?, finished_ts = ?, error = ?,"
    " attempts = attempts + 1, first_attempt_ts = coalesce(first_attempt_ts, ?), version = version + 1,"
    " lease_until = NULL"
    " WHERE id = ? AND status = 'queued'"
)
_DEFERRED_SQL = (
    "UPDATE messages SET deferred_ts = ?, available_at = ?, error = ?, attempts = attempts + ?,"
    " first_attempt_ts = CASE WHEN ? THEN coalesce(first_attempt_ts, ?) ELSE first_attempt_ts END,"
    " version = version + 1, lease_until = NULL WHERE id = ? AND status = 'queued'"
)
_HELD_SQL = "UPDATE messages SET available_at = ?, lease_until = NULL WHERE id = ? AND status = 'queued'"
_ATTEMPT_SQL = (  # before the updates: only messages still queued get an attempt row
    "INSERT INTO attempts (message_id, ts, outcome, code, detail) SELECT ?, ?, ?, ?, ?"
    " WHERE EXISTS (SELECT 1 FROM messages WHERE id = ? AND status = 'queued')"
)
_SEND_LOG_SQL = "INSERT INTO send_log (account_id, ts) VALUES (?, ?)"


def _outcome_statements(outcomes: Sequence[Outcome]) -> list[tuple[str, list[tuple[object, ...]]]]:
    sent = [o for o in outcomes if isinstance(o, Sent)]
    failed = [o for o in outcomes if isinstance(o, Failed)]
    deferred = [o for o in outcomes if isinstance(o, Deferred)]
    held = [o for o in outcomes if isinstance(o, Held)]
    attempts = [o for o in outcomes if not isinstance(o, Held)]
    statements: list[tuple[str, list[tuple[object, ...]]]] = [
        (_ATTEMPT_SQL, [(*attempt_values(o), o.message_id) for o in attempts]),
        (_HELD_SQL, [(o.until, o.message_id) for o in held]),
        (_SENT_SQL, [(o.ts, o.ts, json.dumps(list(o.refused_recipients)), o.ts, o.message_id) for o in sent]),
        (_FAILED_SQL, [(o.ts, o.ts, o.error, o.ts, o.message_id) for o in failed]),
        (
            _DEFERRED_SQL,
            [
                (o.until, o.until, o.reason, int(o.counts_as_attempt), int(o.counts_as_attempt), o.ts, o.message_id)
                for o in deferred
            ],
        ),
        (_SEND_LOG_SQL, [(o.account_id, o.ts) for o in sent]),
    ]
    return [(sql, rows) for sql, rows in statements if rows]


async def _existing_ids(conn: aiosqlite.Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        async with conn.execute(f"SELECT id FROM messages WHERE id IN ({marks})", chunk) as cur:
            found.update(row[0] for row in await cur.fetchall())
    return found
