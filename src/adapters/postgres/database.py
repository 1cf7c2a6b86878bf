"""asyncpg connection pools and migrations.

Two pools: `pool` for statements, `lock_pool` for the connection holding the session-level advisory
locks of WorkLocks (a lock lives as long as its connection, so a replica that dies releases its
locks). Keeping them apart means held locks can never starve the statements that run under them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from adapters.postgres.schema import MIGRATIONS

MIGRATION_LOCK = 727_000_001  # advisory lock key: replicas starting together migrate one at a time


class PostgresDatabase:
    def __init__(self, dsn: str, pool_size: int = 10, lock_pool_size: int = 2, schema: str | None = None) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._lock_pool_size = lock_pool_size
        self.schema = schema
        self._pool: asyncpg.Pool | None = None
        self._lock_pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=1, max_size=self._pool_size, server_settings=settings
        )
        self._lock_pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=self._lock_pool_size)
        await self._migrate()

    async def close(self) -> None:
        if self._lock_pool is not None:
            self._lock_pool.terminate()  # its connection holds advisory locks: ending it releases them
        if self._pool is not None:
            await self._pool.close()
        self._pool = self._lock_pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    @property
    def lock_pool(self) -> asyncpg.Pool:
        if self._lock_pool is None:
            raise RuntimeError("database is not open")
        return self._lock_pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def schema_version(self) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
