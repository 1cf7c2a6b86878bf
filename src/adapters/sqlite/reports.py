"""SQLite ReportQueue."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.sql.rows import REPORT_COLUMNS, report_from_row
from adapters.sqlite.database import SqliteDatabase
from core.model import DeliveryReport
from ports.report_queue import ReportQueue


class SqliteReportQueue(ReportQueue):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def pending_reports(self, limit: int) -> list[DeliveryReport]:
        async with (
            self._db.read() as conn,
            conn.execute(
                f"SELECT {REPORT_COLUMNS} FROM messages WHERE version > reported_version ORDER BY seq LIMIT ?",
                (limit,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [report_from_row(r) for r in rows]

    async def mark_reported(self, reports: Sequence[DeliveryReport], now: float) -> int:
        async with self._db.transaction() as conn:
            before = conn.total_changes
            await conn.executemany(
                "UPDATE messages SET reported_ts = ?, reported_version = version WHERE id = ? AND version = ?",
                [(now, r.id, r.version) for r in reports],
            )
            return conn.total_changes - before

    async def purge_finished(self, cutoff: float, require_reported: bool) -> int:
        condition = "status != 'queued' AND finished_ts < ?"
        if require_reported:
            condition += " AND version = reported_version AND reported_ts < ?"
        params = (cutoff, cutoff) if require_reported else (cutoff,)
        async with self._db.transaction() as conn:
            await conn.execute(
                f"DELETE FROM attempts WHERE message_id IN (SELECT id FROM messages WHERE {condition})", params
            )
            cur = await conn.execute(f"DELETE FROM messages WHERE {condition}", params)
            return cur.rowcount

    async def prune_send_history(self, before: float) -> int:
        async with self._db.transaction() as conn:
            cur = await conn.execute("DELETE FROM send_log WHERE ts < ?", (before,))
            return cur.rowcount
