"""The composition root: the only place that chooses and wires adapters.

Adapter choice follows settings (storage sqlite|memory, smtp aiosmtplib|memory, clock system|frozen,
sync httpx|memory); resources open lazily on first use and close in shutdown_resources().
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Literal

import httpx
from dependency_injector import containers, providers
from pydantic import SecretStr

from adapters.http.report_sink import HttpxReportSink
from adapters.memory.clock import FrozenClock
from adapters.memory.mail_sender import RecordingMailSender
from adapters.memory.report_sink import RecordingReportSink
from adapters.memory.store import (
    InMemoryAccountStore,
    InMemoryDispatchQueue,
    InMemoryMessageStore,
    InMemoryReportQueue,
    InMemoryServiceState,
    MemoryState,
)
from adapters.memory.work_locks import InProcessWorkLocks
from adapters.postgres.accounts import PostgresAccountStore, PostgresServiceState
from adapters.postgres.database import PostgresDatabase
from adapters.postgres.messages import PostgresDispatchQueue, PostgresMessageStore
from adapters.postgres.reports import PostgresReportQueue
from adapters.postgres.work_locks import PostgresWorkLocks
from adapters.secret_box import FernetSecretBox, PlainSecretBox, SecretBox
from adapters.smtp.sender import AiosmtplibMailSender
from adapters.sqlite.accounts import SqliteAccountStore, SqliteServiceState
from adapters.sqlite.database import SqliteDatabase
from adapters.sqlite.messages import SqliteDispatchQueue, SqliteMessageStore
from adapters.sqlite.reports import SqliteReportQueue
from adapters.system_clock import SystemClock
from core.policies.retry import RetryPolicy
from core.policies.validation import IntakeLimits
from core.services.admin import AdminService
from core.services.dispatch import DispatchConfig, DispatchService
from core.services.intake import IntakeService
from core.services.reporting import ReportingService
from core.services.retention import RetentionService
from entrypoints.metrics import MailMetrics
from entrypoints.runner import Runner
from entrypoints.settings import Settings, SmtpSettings, SyncSettings
from ports.clock import Clock

log = logging.getLogger("asyncmail")


def reporting_mode(sync: SyncSettings) -> Literal["httpx", "memory", "off"]:
    """'memory', 'httpx', or 'off' when the httpx sink has no URL to post to."""
    if sync.backend == "memory":
        return "memory"
    return "httpx" if sync.proxy_sync_url else "off"


def frozen_start(settings: Settings) -> float:
    return settings.clock.frozen_start if settings.clock.frozen_start is not None else SystemClock().now()


def intake_limits(settings: Settings) -> IntakeLimits:
    d = settings.delivery
    return IntakeLimits(
        max_message_bytes=d.max_message_bytes, max_attachments=d.max_attachments, max_headers=d.max_headers
    )


def dispatch_config(settings: Settings) -> DispatchConfig:
    d = settings.delivery
    retry = RetryPolicy(
        base_seconds=d.retry_base_seconds,
        factor=d.retry_factor,
        max_delay_seconds=d.retry_max_delay_seconds,
        max_attempts=d.retry_max_attempts,
        max_lifetime_seconds=d.retry_max_lifetime_seconds,
        jitter=d.retry_jitter,
    )
    return DispatchConfig(
        batch_size_per_account=d.batch_size_per_account,
        lease_seconds=d.lease_seconds,
        throttle_seconds=d.throttle_seconds,
        retry=retry,
    )


async def open_sqlite(path: str) -> AsyncIterator[SqliteDatabase]:
    db = SqliteDatabase(path)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def open_smtp_sender(clock: Clock, smtp: SmtpSettings) -> AsyncIterator[AiosmtplibMailSender]:
    helo = smtp.helo_hostname or socket.gethostname() or "localhost"
    sender = AiosmtplibMailSender(
        clock, timeout=smtp.timeout_seconds, validate_certs=smtp.validate_certs, helo_hostname=helo
    )
    try:
        yield sender
    finally:
        await sender.close()


async def open_http_client(sync: SyncSettings) -> AsyncIterator[httpx.AsyncClient]:
    headers = {}
    auth: httpx.BasicAuth | None = None
    if sync.proxy_sync_token is not None:
        headers["Authorization"] = f"Bearer {sync.proxy_sync_token.get_secret_value()}"
    elif sync.proxy_sync_user:
        password = sync.proxy_sync_password.get_secret_value() if sync.proxy_sync_password else ""
        auth = httpx.BasicAuth(sync.proxy_sync_user, password)
    async with httpx.AsyncClient(timeout=sync.timeout_seconds, headers=headers, auth=auth) as client:
        yield client


def secret_box(key: SecretStr | None) -> SecretBox:
    return FernetSecretBox(key.get_secret_value()) if key is not None else PlainSecretBox()


async def open_postgres(dsn: SecretStr, pool_size: int) -> AsyncIterator[PostgresDatabase]:
    db = PostgresDatabase(dsn.get_secret_value(), pool_size=pool_size)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def open_postgres_accounts(db: PostgresDatabase, box: SecretBox) -> AsyncIterator[PostgresAccountStore]:
    store = PostgresAccountStore(db, box)
    await store.seal_stored_passwords()
    yield store


async def open_sqlite_accounts(db: SqliteDatabase, box: SecretBox) -> AsyncIterator[SqliteAccountStore]:
    store = SqliteAccountStore(db, box)
    sealed = await store.seal_stored_passwords()
    if sealed:
        log.info("encrypted %d SMTP password(s) stored before a secret_key was configured", sealed)
    yield store


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Selector(
        settings.provided.clock.backend,
        system=providers.Singleton(SystemClock),
        frozen=providers.Singleton(FrozenClock, start=providers.Callable(frozen_start, settings)),
    )

    sqlite = providers.Resource(open_sqlite, path=settings.provided.storage.db_path)
    postgres = providers.Resource(
        open_postgres, settings.provided.storage.postgres_dsn, settings.provided.storage.postgres_pool_size
    )
    box = providers.Callable(secret_box, settings.provided.storage.secret_key)
    memory = providers.Singleton(MemoryState)

    messages = providers.Selector(
        settings.provided.storage.backend,
        sqlite=providers.Singleton(SqliteMessageStore, sqlite),
        memory=providers.Singleton(InMemoryMessageStore, memory),
        postgres=providers.Singleton(PostgresMessageStore, postgres),
    )
    dispatch_queue = providers.Selector(
        settings.provided.storage.backend,
        sqlite=providers.Singleton(SqliteDispatchQueue, sqlite),
        memory=providers.Singleton(InMemoryDispatchQueue, memory),
        postgres=providers.Singleton(PostgresDispatchQueue, postgres),
    )
    report_queue = providers.Selector(
        settings.provided.storage.backend,
        sqlite=providers.Singleton(SqliteReportQueue, sqlite),
        memory=providers.Singleton(InMemoryReportQueue, memory),
        postgres=providers.Singleton(PostgresReportQueue, postgres),
    )
    accounts = providers.Selector(
        settings.provided.storage.backend,
        sqlite=providers.Resource(open_sqlite_accounts, sqlite, box),
        postgres=providers.Resource(open_postgres_accounts, postgres, box),
        memory=providers.Singleton(InMemoryAccountStore, memory),
    )
    service_state = providers.Selector(
        settings.provided.storage.backend,
        sqlite=providers.Singleton(SqliteServiceState, sqlite),
        memory=providers.Singleton(InMemoryServiceState, memory),
        postgres=providers.Singleton(PostgresServiceState, postgres),
    )

    mail_sender = providers.Selector(
        settings.provided.smtp.backend,
        aiosmtplib=providers.Resource(open_smtp_sender, clock, settings.provided.smtp),
        memory=providers.Singleton(RecordingMailSender, clock),
    )

    http_client = providers.Resource(open_http_client, settings.provided.sync)
    report_sink = providers.Selector(
        providers.Callable(reporting_mode, settings.provided.sync),
        httpx=providers.Singleton(HttpxReportSink, http_client, settings.provided.sync.proxy_sync_url),
        memory=providers.Singleton(RecordingReportSink),
        off=providers.Object(None),
    )

    metrics = providers.Singleton(MailMetrics)
    work_locks = providers.Selector(
        settings.provided.storage.backend,
        sqlite=providers.Singleton(InProcessWorkLocks),
        memory=providers.Singleton(InProcessWorkLocks),
        postgres=providers.Singleton(PostgresWorkLocks, postgres),
    )

    intake = providers.Singleton(IntakeService, messages, accounts, clock, providers.Callable(intake_limits, settings))
    admin = providers.Singleton(AdminService, accounts, messages, service_state, clock)
    dispatch = providers.Singleton(
        DispatchService,
        dispatch_queue,
        accounts,
        service_state,
        mail_sender,
        clock,
        providers.Callable(dispatch_config, settings),
        locks=work_locks,
    )
    reporting = providers.Selector(
        providers.Callable(lambda sync: "off" if reporting_mode(sync) == "off" else "on", settings.provided.sync),
        on=providers.Singleton(
            ReportingService, report_queue, report_sink, clock, settings.provided.sync.batch_size, locks=work_locks
        ),
        off=providers.Object(None),
    )
    retention = providers.Singleton(
        RetentionService,
        report_queue,
        dispatch_queue,
        clock,
        settings.provided.delivery.retention_seconds,
        providers.Callable(lambda s: reporting_mode(s.sync) != "off", settings),
    )
    runner = providers.Singleton(
        Runner,
        dispatch,
        reporting,
        retention,
        clock,
        metrics,
        send_interval=settings.provided.delivery.send_interval_seconds,
        report_interval=settings.provided.sync.interval_seconds,
        retention_interval=settings.provided.delivery.retention_interval_seconds,
        run_now_waits=settings.provided.delivery.test_mode,
    )
