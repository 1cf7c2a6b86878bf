"""Fixtures for the real-delivery tests: TLS/AUTH SMTP servers, fault servers, senders, SQLite dispatch, the API.

`smtp_server`, `report_receiver` and `closed_port` come from tests/integration/conftest.py.

`tls_cert`        a self-signed certificate for 127.0.0.1/localhost (once per session)
`secure_smtp`     secure_smtp(implicit_tls=..., starttls=..., users=..., auth_require_tls=...) -> SecureSmtpServer
`raw_smtp`        raw_smtp("hang") / raw_smtp("drop_in_data", "normal") -> RawSmtpServer
`clock`           a FrozenClock at T0
`make_sender`     make_sender(timeout=..., tls_context=...) -> AiosmtplibMailSender, closed after the test
`dispatch_world`  SQLite stores in tmp_path + the frozen clock: .add_account, .enqueue, .dispatcher(sender, config)
`start_api`       from tests/integration/conftest.py
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from delivery_support import (
    T0,
    DispatchWorld,
    RawSmtpServer,
    SecureSmtpServer,
    SelfSignedCert,
    make_self_signed_cert,
    start_secure_smtp,
)

from adapters.memory.clock import FrozenClock
from adapters.smtp.sender import AiosmtplibMailSender
from adapters.sqlite.database import SqliteDatabase


@pytest.fixture(autouse=True)
def _quiet_mail_servers() -> Iterator[None]:
    """aiosmtpd logs every connection at INFO; keep caplog about asyncmail (restored after the test)."""
    logger = logging.getLogger("mail.log")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def secure_smtp(tls_cert: SelfSignedCert) -> Iterator[Callable[..., SecureSmtpServer]]:
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> SecureSmtpServer:
        server, stop = start_secure_smtp(tls_cert, **options)
        stops.append(stop)
        return server

    try:
        yield start
    finally:
        for stop in stops:
            stop()


@pytest.fixture
def raw_smtp() -> Iterator[Callable[..., RawSmtpServer]]:
    servers: list[RawSmtpServer] = []

    def start(*script: str) -> RawSmtpServer:
        server = RawSmtpServer(list(script))
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def make_sender(clock: FrozenClock) -> AsyncIterator[Callable[..., AiosmtplibMailSender]]:
    senders: list[AiosmtplibMailSender] = []

    def make(**kwargs: Any) -> AiosmtplibMailSender:
        kwargs.setdefault("timeout", 3.0)
        kwargs.setdefault("helo_hostname", "client.test")
        sender = AiosmtplibMailSender(clock, **kwargs)
        senders.append(sender)
        return sender

    try:
        yield make
    finally:
        for sender in senders:
            await sender.close()


@pytest.fixture
async def dispatch_world(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[DispatchWorld]:
    db = SqliteDatabase(str(tmp_path / "dispatch.db"))
    await db.open()
    try:
        yield DispatchWorld(db, clock)
    finally:
        await db.close()
