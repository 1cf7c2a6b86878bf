"""WorkLocks contract: in-process and PostgreSQL advisory locks behave alike for one process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pg_support
import pytest

from adapters.memory.work_locks import InProcessWorkLocks
from adapters.postgres.database import PostgresDatabase
from adapters.postgres.work_locks import PostgresWorkLocks
from ports.work_locks import WorkLocks


@pytest.fixture(params=["in-process", "postgres"])
async def locks(request: pytest.FixtureRequest) -> AsyncIterator[WorkLocks]:
    if request.param == "in-process":
        yield InProcessWorkLocks()
        return
    pg_support.require_postgres()
    schema = pg_support.new_schema_name()
    await pg_support.create_schema(schema)
    db = PostgresDatabase(pg_support.DSN, pool_size=2, schema=schema)
    await db.open()
    try:
        yield PostgresWorkLocks(db)
    finally:
        await db.close()
        await pg_support.drop_schema(schema)


async def test_a_held_key_is_refused_until_released(locks: WorkLocks) -> None:
    async with locks.hold("dispatch:acc") as first:
        assert first is True
        async with locks.hold("dispatch:acc") as second:
            assert second is False
        async with locks.hold("dispatch:other") as other:
            assert other is True
    async with locks.hold("dispatch:acc") as again:
        assert again is True


async def test_many_keys_at_once(locks: WorkLocks) -> None:
    """Holding more keys than any pool has connections must work (one session holds them all)."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        held = [await stack.enter_async_context(locks.hold(f"dispatch:acc{i}")) for i in range(40)]
        assert all(held)
    async with locks.hold("dispatch:acc0") as again:
        assert again is True


async def test_two_processes_exclude_each_other() -> None:
    """Two PostgresWorkLocks on separate pools stand for two replicas."""
    pg_support.require_postgres()
    schema = pg_support.new_schema_name()
    await pg_support.create_schema(schema)
    first_db = PostgresDatabase(pg_support.DSN, pool_size=2, schema=schema)
    second_db = PostgresDatabase(pg_support.DSN, pool_size=2, schema=schema)
    await first_db.open()
    await second_db.open()
    try:
        first, second = PostgresWorkLocks(first_db), PostgresWorkLocks(second_db)
        async with first.hold("reporting") as mine:
            assert mine is True
            async with second.hold("reporting") as theirs:
                assert theirs is False
        async with second.hold("reporting") as now_theirs:
            assert now_theirs is True
        async with first.hold("dispatch:acc"):
            await first_db.close()  # a replica that dies releases what it held
            async with second.hold("dispatch:acc") as taken_over:
                assert taken_over is True
    finally:
        await second_db.close()
        await pg_support.drop_schema(schema)
