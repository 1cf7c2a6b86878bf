"""aiosmtplib MailSender: one reusable connection per account, library errors mapped to port errors."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiosmtplib

from adapters.smtp.builder import build_email, envelope_for
from core.model import Account, Message
from ports.clock import Clock
from ports.mail_sender import MailSender, PermanentSendError, SendReceipt, TransientSendError

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset({421, 450, 451, 452, 454})


@dataclass(slots=True)
class _Slot:
    lock: asyncio.Lock
    client: aiosmtplib.SMTP | None = None
    key: tuple[object, ...] = ()


class AiosmtplibMailSender(MailSender):
    def __init__(self, clock: Clock, timeout: float = 30.0, validate_certs: bool = True) -> None:
        self._clock = clock
        self._timeout = timeout
        self._validate_certs = validate_certs
        self._slots: dict[str, _Slot] = {}

    async def send(self, account: Account, message: Message) -> SendReceipt:
        data = build_email(message, self._clock.now())
        envelope = envelope_for(message)
        slot = self._slots.setdefault(account.id, _Slot(asyncio.Lock()))
        async with slot.lock:
            try:
                client = await self._connected(slot, account)
                errors, reply = await client.send_message(
                    data, sender=envelope.sender, recipients=list(envelope.recipients)
                )
            except aiosmtplib.SMTPException as exc:
                await self._drop(slot)
                raise classify(exc) from exc
            except OSError as exc:
                await self._drop(slot)
                raise TransientSendError(f"connection error: {exc}") from exc
        refused = {rcpt: f"{resp.code} {resp.message}" for rcpt, resp in errors.items()}
        code, _, text = reply.partition(" ")
        return SendReceipt(int(code) if code.isdigit() else 250, text, refused)

    async def close(self) -> None:
        for slot in self._slots.values():
            async with slot.lock:
                await self._drop(slot)

    async def _connected(self, slot: _Slot, account: Account) -> aiosmtplib.SMTP:
        key = (account.host, account.port, account.user, account.password, account.use_tls)
        if slot.client is not None and (slot.key != key or not slot.client.is_connected):
            await self._drop(slot)
        if slot.client is None:
            client = aiosmtplib.SMTP(
                hostname=account.host,
                port=account.port,
                use_tls=account.use_tls,
                start_tls=None,
                timeout=self._timeout,
                validate_certs=self._validate_certs,
            )
            await client.connect()
            if account.user and account.password:
                await client.login(account.user, account.password)
            slot.client, slot.key = client, key
        return slot.client

    async def _drop(self, slot: _Slot) -> None:
        client, slot.client = slot.client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()


def classify(exc: aiosmtplib.SMTPException) -> TransientSendError | PermanentSendError:
    """Map an aiosmtplib error to the port's temporary/permanent distinction."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [err.code for err in exc.recipients]
        detail = "all recipients refused: " + "; ".join(f"{e.recipient}: {e.code} {e.message}" for e in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            return PermanentSendError(detail, codes[0])
        return TransientSendError(detail, min(codes) if codes else None)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            return PermanentSendError(exc.message, exc.code)
        return TransientSendError(exc.message, exc.code, throttled=exc.code in THROTTLE_CODES)
    return TransientSendError(f"{type(exc).__name__}: {exc}")
