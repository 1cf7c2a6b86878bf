"""WorkLocks over PostgreSQL session advisory locks: cluster-wide, released if the holder dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.postgres.database import PostgresDatabase
from ports.work_locks import WorkLocks

ACQUIRE_TIMEOUT_SECONDS = 2.0


class PostgresWorkLocks(WorkLocks):
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        scoped = f"{self._db.schema or 'public'}:{key}"
        try:
            conn = await self._db.lock_pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
        except TimeoutError:
            yield False  # every lock connection is busy: treat as held elsewhere, try next tick
            return
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", scoped)
            if not got:
                yield False
                return
            try:
                yield True
            finally:
                await asyncio.shield(conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", scoped))
        finally:
            await self._db.lock_pool.release(conn)
