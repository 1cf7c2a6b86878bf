"""aiosmtplib MailSender: a connection pool per account, TLS policy, library errors mapped to port errors.

Pools are keyed by account id and rebuilt when the account's server, credentials or TLS mode
change. Each pool holds at most `account.max_connections` connections; an idle connection is
closed after `account.ttl_seconds` and checked with NOOP before reuse once it has idled a while.
Pools never share a lock, so a slow server only slows its own account.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Collection
from dataclasses import dataclass, field

import aiosmtplib

from adapters.smtp.builder import Envelope, envelope_for, message_bytes
from core.model import Account, Message, StartTls
from ports.clock import Clock
from ports.mail_sender import MailSender, PermanentSendError, SendReceipt, TransientSendError, storable

log = logging.getLogger(__name__)

ALWAYS_THROTTLING = frozenset({421, 454})
# 450/451/452 throttle only when the text says so; otherwise they are greylisting or a full mailbox.
THROTTLING_WHEN_WORDED = frozenset({450, 451, 452})
RATE_WORDING = re.compile(r"rate|too many|throttl|limit|slow down|exceeded|frequency", re.IGNORECASE)


def is_throttling(code: int, text: str) -> bool:
    return code in ALWAYS_THROTTLING or (code in THROTTLING_WHEN_WORDED and bool(RATE_WORDING.search(text)))


HEALTH_CHECK_AFTER_SECONDS = 15.0


@dataclass(slots=True)
class _Connection:
    client: aiosmtplib.SMTP
    last_used: float


@dataclass(slots=True)
class _Pool:
    key: tuple[object, ...]
    slots: asyncio.Semaphore
    ttl: float
    idle: list[_Connection] = field(default_factory=list)
    retired: bool = False


class AiosmtplibMailSender(MailSender):
    def __init__(
        self,
        clock: Clock,
        timeout: float = 30.0,
        validate_certs: bool = True,
        helo_hostname: str = "localhost",
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._validate_certs = validate_certs
        self._helo = helo_hostname
        self._tls_context = tls_context
        self._pools: dict[str, _Pool] = {}
        self.connections_opened = 0

    async def send(self, account: Account, message: Message) -> SendReceipt:
        data = message_bytes(message, self._clock.now())
        envelope = envelope_for(message)
        pool = self._pool_for(account)
        async with pool.slots:
            conn = await self._checkout(pool, account)
            try:
                errors, reply = await _transmit(conn.client, envelope, data)
            except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
                code = getattr(exc, "code", None)
                self._checkin(pool, conn, reusable=code != 421)
                raise classify(exc) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                _discard(conn)
                raise TransientSendError(f"connection lost: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                _discard(conn)
                raise
            self._checkin(pool, conn, reusable=True)
        refused = {storable(rcpt): storable(f"{exc.code} {exc.message}") for rcpt, exc in errors.items()}
        return SendReceipt(reply.code, storable(reply.message), refused)

    async def close_idle(self, now: float, account_ids: Collection[str]) -> None:
        for account_id in [a for a in self._pools if a not in account_ids]:
            pool = self._pools.pop(account_id)
            pool.retired = True
            for conn in pool.idle:
                _discard(conn)
            pool.idle.clear()
        for pool in self._pools.values():
            expired = [c for c in pool.idle if now - c.last_used > pool.ttl or not c.client.is_connected]
            pool.idle = [c for c in pool.idle if c not in expired]
            for conn in expired:
                _discard(conn)  # no QUIT: a half-dead server must not stall the dispatcher

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.retired = True
            await _close_idle(pool)

    def _pool_for(self, account: Account) -> _Pool:
        key = (
            account.host,
            account.port,
            account.user,
            account.password,
            account.use_tls,
            account.starttls,
            account.allow_insecure_auth,
            account.max_connections,
            account.ttl_seconds,
        )
        pool = self._pools.get(account.id)
        if pool is None or pool.key != key:
            if pool is not None:
                pool.retired = True
                for conn in pool.idle:
                    _discard(conn)
                pool.idle.clear()
            pool = _Pool(key, asyncio.Semaphore(account.max_connections), account.ttl_seconds)
            self._pools[account.id] = pool
        return pool

    async def _checkout(self, pool: _Pool, account: Account) -> _Connection:
        now = self._clock.now()
        while pool.idle:
            conn = pool.idle.pop()
            idle_for = now - conn.last_used
            if not conn.client.is_connected or idle_for > account.ttl_seconds:
                await _quit(conn)
                continue
            if idle_for > HEALTH_CHECK_AFTER_SECONDS and not await _healthy(conn):
                continue
            return conn
        return _Connection(await self._connect(account), now)

    def _checkin(self, pool: _Pool, conn: _Connection, reusable: bool) -> None:
        if reusable and not pool.retired and conn.client.is_connected:
            conn.last_used = self._clock.now()
            pool.idle.append(conn)
        else:
            _discard(conn)

    async def _connect(self, account: Account) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=account.host,
            port=account.port,
            use_tls=account.use_tls,
            start_tls=False,
            timeout=self._timeout,
            validate_certs=self._validate_certs,
            tls_context=self._tls_context,
            local_hostname=self._helo,
        )
        try:
            await client.connect()
            self.connections_opened += 1
            await client.ehlo()
            await self._secure(client, account)
            if account.user and account.password:
                await client.login(account.user, account.password)
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise classify(exc) from exc
        except (OSError, ssl.SSLError) as exc:
            client.close()
            raise TransientSendError(f"cannot connect to {account.host}:{account.port}: {exc}") from exc
        except BaseException:
            client.close()
            raise
        return client

    async def _secure(self, client: aiosmtplib.SMTP, account: Account) -> None:
        if not account.use_tls and account.starttls is not StartTls.OFF:
            if client.supports_extension("starttls"):
                await client.starttls()
            elif account.starttls is StartTls.REQUIRED:
                raise _refuse(
                    client, f"{account.host}:{account.port} does not offer STARTTLS, which the account requires"
                )
        encrypted = client.get_transport_info("ssl_object") is not None
        if account.user and account.password and not encrypted and not account.allow_insecure_auth:
            raise _refuse(
                client,
                f"refusing to send credentials to {account.host}:{account.port} over an unencrypted connection "
                "(enable use_tls or STARTTLS, or set allow_insecure_auth)",
            )


async def _transmit(
    client: aiosmtplib.SMTP, envelope: Envelope, data: bytes
) -> tuple[dict[str, aiosmtplib.SMTPRecipientRefused], aiosmtplib.SMTPResponse]:
    """MAIL, RCPT each recipient, DATA; returns (refused recipients, the DATA reply).

    Done step by step rather than with sendmail() so that a 421 to one RCPT (after which the server
    closes the connection) surfaces as that 421, not as a disconnect on the next recipient.
    """
    options = [f"SIZE={len(data)}"] if client.supports_extension("size") else []
    utf8 = not (envelope.sender.isascii() and all(r.isascii() for r in envelope.recipients))
    if utf8:
        options.append("SMTPUTF8")
    encoding = "utf-8" if utf8 else "ascii"
    await client.mail(envelope.sender, options=options, encoding=encoding)
    refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
    try:
        for recipient in envelope.recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421:
                    raise
                refused[recipient] = exc
        if len(refused) == len(envelope.recipients):
            raise aiosmtplib.SMTPRecipientsRefused(list(refused.values()))
        reply = await client.data(data)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        await _reset(client)
        raise
    return refused, reply


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal so the session can carry the next message."""
    if client.is_connected:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            client.close()


def _refuse(client: aiosmtplib.SMTP, reason: str) -> TransientSendError:
    client.close()
    return TransientSendError(reason)


async def _healthy(conn: _Connection) -> bool:
    try:
        await conn.client.noop()
    except (aiosmtplib.SMTPException, OSError):
        _discard(conn)
        return False
    return True


async def _quit(conn: _Connection) -> None:
    if conn.client.is_connected:
        try:
            await conn.client.quit()
        except (aiosmtplib.SMTPException, OSError):
            conn.client.close()


def _discard(conn: _Connection) -> None:
    conn.client.close()


async def _close_idle(pool: _Pool) -> None:
    idle, pool.idle = pool.idle, []
    await asyncio.gather(*(_quit(conn) for conn in idle), return_exceptions=True)


def classify(exc: aiosmtplib.SMTPException) -> TransientSendError | PermanentSendError:
    """Map an aiosmtplib error to the port's temporary/permanent distinction (see README table)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [err.code for err in exc.recipients]
        detail = "all recipients refused: " + "; ".join(f"{e.recipient}: {e.code} {e.message}" for e in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            return PermanentSendError(detail, codes[0])
        temporary = [err for err in exc.recipients if err.code < 500]
        return TransientSendError(
            detail,
            temporary[0].code if temporary else None,
            throttled=any(is_throttling(err.code, err.message) for err in temporary),
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            return PermanentSendError(exc.message, exc.code)
        return TransientSendError(exc.message, exc.code, throttled=is_throttling(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPConnectTimeoutError):
        return TransientSendError(f"timeout: {exc}")
    return TransientSendError(f"{type(exc).__name__}: {exc}")
