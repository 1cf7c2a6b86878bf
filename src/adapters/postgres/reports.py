"""PostgreSQL ReportQueue."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.postgres.database import PostgresDatabase
from adapters.sql.rows import REPORT_COLUMNS, report_from_row
from core.model import DeliveryReport
from ports.report_queue import ReportQueue


def _count(status: str) -> int:
    """'DELETE 12' -> 12."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresReportQueue(ReportQueue):
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def pending_reports(self, limit: int) -> list[DeliveryReport]:
        rows = await self._db.pool.fetch(
            f"SELECT {REPORT_COLUMNS} FROM messages WHERE version > reported_version ORDER BY seq LIMIT $1",
            limit,
        )
        return [report_from_row(r) for r in rows]

    async def mark_reported(self, reports: Sequence[DeliveryReport], now: float) -> int:
        if not reports:
            return 0
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "UPDATE messages m SET reported_ts = $3, reported_version = m.version"
                " FROM unnest($1::text[], $2::int[]) AS r(id, version)"
                " WHERE m.id = r.id AND m.version = r.version RETURNING m.id",
                [r.id for r in reports],
                [r.version for r in reports],
                now,
            )
        return len(rows)

    async def purge_finished(self, cutoff: float, require_reported: bool) -> int:
        condition = "status <> 'queued' AND finished_ts < $1"
        if require_reported:
            condition += " AND version = reported_version AND reported_ts < $1"
        async with self._db.transaction() as conn:
            await conn.execute(
                f"DELETE FROM attempts WHERE message_id IN (SELECT id FROM messages WHERE {condition})", cutoff
            )
            return _count(await conn.execute(f"DELETE FROM messages WHERE {condition}", cutoff))

    async def prune_send_history(self, before: float) -> int:
        async with self._db.transaction() as conn:
            return _count(await conn.execute("DELETE FROM send_log WHERE ts < $1", before))
