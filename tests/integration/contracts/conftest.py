"""Storage backends for the storage-port contract suites (STYLE.md convention 8).

Every test that takes `storage` runs once per entry of STORAGE_BACKENDS and sees the five store
ports of one fresh, empty backend. Adding a backend (postgres) is one function and one entry:

    @asynccontextmanager
    async def _open_postgres(location: Path) -> AsyncIterator[Storage]:
        ...  # connect to a throw-away database, yield Storage(...), drop it

    STORAGE_BACKENDS.append(StorageBackendSpec("postgres", _open_postgres, persistent=True, marks=(skip_without_dsn,)))

Tests that need a restart (close, then open the same data again) take `persistent_backend` and call
`persistent_backend.open()` themselves; it runs only over the backends that keep their data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg_support
import pytest

from adapters.memory.store import (
    InMemoryAccountStore,
    InMemoryDispatchQueue,
    InMemoryMessageStore,
    InMemoryReportQueue,
    InMemoryServiceState,
    MemoryState,
)
from adapters.postgres.accounts import PostgresAccountStore, PostgresServiceState
from adapters.postgres.database import PostgresDatabase
from adapters.postgres.messages import PostgresDispatchQueue, PostgresMessageStore
from adapters.postgres.reports import PostgresReportQueue
from adapters.sqlite.accounts import SqliteAccountStore, SqliteServiceState
from adapters.sqlite.database import SqliteDatabase
from adapters.sqlite.messages import SqliteDispatchQueue, SqliteMessageStore
from adapters.sqlite.reports import SqliteReportQueue
from core.model import Account, Message
from ports.account_store import AccountStore
from ports.dispatch_queue import DispatchQueue
from ports.message_store import MessageStore
from ports.report_queue import ReportQueue
from ports.service_state import ServiceState


@dataclass(frozen=True)
class Storage:
    """The five store ports of one open backend."""

    backend: str
    messages: MessageStore
    queue: DispatchQueue
    reports: ReportQueue
    accounts: AccountStore
    service: ServiceState


Opener = Callable[[Path], AbstractAsyncContextManager[Storage]]


@dataclass(frozen=True)
class StorageBackendSpec:
    name: str
    opener: Opener
    persistent: bool
    """Whether what was stored survives closing the backend and opening the same location again."""
    marks: Sequence[Any] = ()
    cleanup: Callable[[Path], Awaitable[None]] | None = None
    """Run once after the test (e.g. drop the PostgreSQL schema)."""


@dataclass(frozen=True)
class StorageBackend:
    """One backend bound to one location (a tmp_path); `open()` may be entered several times in turn."""

    name: str
    location: Path
    persistent: bool
    _opener: Opener = field(repr=False)

    def open(self) -> AbstractAsyncContextManager[Storage]:
        return self._opener(self.location)


@asynccontextmanager
async def _open_memory(location: Path) -> AsyncIterator[Storage]:
    state = MemoryState()
    yield Storage(
        "memory",
        InMemoryMessageStore(state),
        InMemoryDispatchQueue(state),
        InMemoryReportQueue(state),
        InMemoryAccountStore(state),
        InMemoryServiceState(state),
    )


@asynccontextmanager
async def _open_sqlite(location: Path) -> AsyncIterator[Storage]:
    db = SqliteDatabase(str(location / "contract.db"))
    await db.open()
    try:
        yield Storage(
            "sqlite",
            SqliteMessageStore(db),
            SqliteDispatchQueue(db),
            SqliteReportQueue(db),
            SqliteAccountStore(db),
            SqliteServiceState(db),
        )
    finally:
        await db.close()


def _schema_for(location: Path) -> str:
    """One PostgreSQL schema per test location, so a persistent re-open finds the same data."""
    marker = location / "postgres-schema"
    if not marker.exists():
        marker.write_text(pg_support.new_schema_name())
    return marker.read_text()


@asynccontextmanager
async def _open_postgres(location: Path) -> AsyncIterator[Storage]:
    pg_support.require_postgres()
    schema = _schema_for(location)
    await pg_support.create_schema(schema)
    db = PostgresDatabase(pg_support.DSN, pool_size=4, lock_pool_size=2, schema=schema)
    await db.open()
    try:
        yield Storage(
            "postgres",
            PostgresMessageStore(db),
            PostgresDispatchQueue(db),
            PostgresReportQueue(db),
            PostgresAccountStore(db),
            PostgresServiceState(db),
        )
    finally:
        await db.close()


async def _drop_postgres(location: Path) -> None:
    marker = location / "postgres-schema"
    if marker.exists():
        await pg_support.drop_schema(marker.read_text())


STORAGE_BACKENDS: list[StorageBackendSpec] = [
    StorageBackendSpec("memory", _open_memory, persistent=False),
    StorageBackendSpec("sqlite", _open_sqlite, persistent=True),
    StorageBackendSpec("postgres", _open_postgres, persistent=True, cleanup=_drop_postgres),
]


def _params(specs: Sequence[StorageBackendSpec]) -> list[Any]:
    return [pytest.param(spec, id=spec.name, marks=spec.marks) for spec in specs]


async def _bound(spec: StorageBackendSpec, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    yield StorageBackend(spec.name, tmp_path, spec.persistent, spec.opener)
    if spec.cleanup is not None:
        await spec.cleanup(tmp_path)


@pytest.fixture(params=_params(STORAGE_BACKENDS))
async def storage_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """The backend under test, not yet opened, bound to this test's tmp_path."""
    async for backend in _bound(request.param, tmp_path):
        yield backend


@pytest.fixture(params=_params([spec for spec in STORAGE_BACKENDS if spec.persistent]))
async def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """Like storage_backend, over the backends whose data outlives closing them (not memory)."""
    async for backend in _bound(request.param, tmp_path):
        yield backend


@pytest.fixture
async def storage(storage_backend: StorageBackend) -> AsyncIterator[Storage]:
    """The backend under test, opened and empty; closed after the test."""
    async with storage_backend.open() as opened:
        yield opened


@pytest.fixture
def known_bug(request: pytest.FixtureRequest) -> Callable[..., None]:
    """known_bug("sqlite", reason="BUG: ...") marks this run strict-xfail when it runs on that backend."""

    def mark(*backends: str, reason: str) -> None:
        backend = request.getfixturevalue("storage_backend").name
        if backend in backends:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    return mark


def _message(message_id: str = "m1", account_id: str = "acc", /, **fields: Any) -> Message:
    values: dict[str, Any] = {"from_addr": "Sender <sender@example.com>", "to": ("rcpt@example.org",)}
    values.update(fields)
    return Message(message_id, account_id, **values)


def _account(account_id: str = "acc", /, **fields: Any) -> Account:
    values: dict[str, Any] = {"host": "smtp.example.com", "port": 587}
    values.update(fields)
    return Account(account_id, **values)


@pytest.fixture
def make_message() -> Callable[..., Message]:
    """make_message("m1", "acc", priority=Priority.HIGH) -> a valid Message (defaults: account "acc")."""
    return _message


@pytest.fixture
def make_account() -> Callable[..., Account]:
    """make_account("acc", password="x") -> an Account on smtp.example.com:587."""
    return _account
