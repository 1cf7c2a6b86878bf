"""WorkLocks over PostgreSQL session advisory locks: cluster-wide, released if the holder dies.

All of a process's locks live on one dedicated connection (session locks are per connection), so
holding many accounts at once never exhausts a pool, and reporting competes on equal terms. An
asyncio lock serialises the lock and unlock statements on that connection. If the connection
breaks, the server has released every lock with it: holders carry on (claims are still guarded
by SKIP LOCKED and leases) and the next hold reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from adapters.postgres.database import PostgresDatabase
from ports.work_locks import WorkLocks

log = logging.getLogger(__name__)


class PostgresWorkLocks(WorkLocks):
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._conn: asyncpg.Connection | None = None
        self._mutex = asyncio.Lock()
        self._held: set[str] = set()  # session locks are re-entrant: refuse a second holder here ourselves

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        scoped = f"{self._db.schema or 'public'}:{key}"
        if scoped in self._held:
            yield False
            return
        self._held.add(scoped)
        try:
            conn = await self._run("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", scoped)
            if conn is None:
                yield False
                return
            try:
                yield True
            finally:
                await self._release(conn, scoped)
        finally:
            self._held.discard(scoped)

    async def _run(self, sql: str, key: str) -> asyncpg.Connection | None:
        """The connection the lock was taken on, or None when it was not taken."""
        async with self._mutex:
            try:
                if self._conn is None or not _alive(self._conn):
                    self._conn = await self._db.lock_pool.acquire()
                conn: asyncpg.Connection = self._conn
                got = await conn.fetchval(sql, key)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("advisory lock %s not taken: %s", key, exc)
                await self._drop()
                return None
            return conn if got else None

    async def _release(self, held_on: asyncpg.Connection, key: str) -> None:
        async with self._mutex:
            if held_on is not self._conn or not _alive(held_on):
                return  # that session is gone, and its locks with it
            conn: asyncpg.Connection = held_on
            try:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("advisory unlock of %s failed: %s", key, exc)
                await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and _alive(conn):
            await self._db.lock_pool.release(conn)

    async def close(self) -> None:
        async with self._mutex:
            await self._drop()


def _alive(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # already handed back to a pool that was closed
        return False
