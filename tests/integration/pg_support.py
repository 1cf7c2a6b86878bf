"""PostgreSQL for the tests: where it is, whether it is up, a throw-away schema per test.

The server is taken from ASYNCMAIL_TEST_POSTGRES_DSN (default: this project's machines,
postgresql://postgres@127.0.0.1:5432/test). Without a reachable server the PostgreSQL tests
skip with the reason; in CI (CI=true) a missing server is a failure, not a skip.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest

DSN = os.environ.get("ASYNCMAIL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def _reachable() -> str | None:
    """None when a server answers at the DSN's host and port, else why not."""
    parts = urlsplit(DSN)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"no PostgreSQL server at {host}:{port} ({exc}); set ASYNCMAIL_TEST_POSTGRES_DSN to run these tests"


def require_postgres() -> None:
    problem = _reachable()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs PostgreSQL: {problem}")
    pytest.skip(problem)


def new_schema_name() -> str:
    return "t_" + uuid.uuid4().hex[:16]


async def create_schema(name: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
    finally:
        await conn.close()


async def drop_schema(name: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def dsn_with_schema(name: str) -> str:
    """A DSN whose connections use `name` as search_path (asyncpg passes unknown query keys as settings)."""
    separator = "&" if "?" in DSN else "?"
    return f"{DSN}{separator}search_path={name}"
