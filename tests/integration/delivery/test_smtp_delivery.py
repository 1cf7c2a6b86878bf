"""Real delivery: AiosmtplibMailSender and the dispatcher against real SMTP servers on 127.0.0.1.

Covers the connection pool, the TLS modes (implicit TLS, STARTTLS opportunistic/required/off) with a
self-signed certificate made here, AUTH policy, the reply-code classification at every stage,
connection faults (refused, dropped mid-DATA, a server that never greets), the message as the server
receives it, and the dispatcher's retry schedule and throttling pause on a frozen clock.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from delivery_support import T0, AuthAttempt, DispatchWorld, RawSmtpServer, SecureSmtpServer, SelfSignedCert, StartApi

from adapters.smtp.sender import AiosmtplibMailSender
from core.model import Attachment, Message, MessageStatus, StartTls
from core.policies.retry import RetryPolicy
from core.services.dispatch import DispatchConfig
from ports.mail_sender import PermanentSendError, TransientSendError

MakeSender = Callable[..., AiosmtplibMailSender]
SecureSmtp = Callable[..., SecureSmtpServer]
RawSmtp = Callable[..., RawSmtpServer]


def _message(mid: str = "m1", account_id: str = "acc", /, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "from_addr": "Sender <sender@example.com>",
        "to": ("rcpt@example.org",),
        "subject": f"subject {mid}",
        "body": f"body of {mid}\n",
    }
    values.update(fields)
    return Message(mid, account_id, **values)


def _count_calls(server: Any, hook: str) -> list[str]:
    """Wrap the SMTP server's MAIL or RCPT hook to record every address it was given (accepted or not)."""
    seen: list[str] = []
    original = getattr(server, f"handle_{hook}")

    async def counting(smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        seen.append(address)
        return str(await original(smtp, session, envelope, address, options))

    setattr(server, f"handle_{hook}", counting)  # hooks are looked up per connection: set before sending
    return seen


def _subjects(server: Any) -> list[str]:
    return [str(m.email["Subject"]) for m in server.messages]


# ------------------------------------------------------------------------------------------ pooling


async def test_twenty_sends_to_one_account_reuse_pooled_connections(smtp_server, make_sender: MakeSender) -> None:
    sender = make_sender()
    account = smtp_server.account("acc", max_connections=3)
    for i in range(10):
        await sender.send(account, _message(f"seq{i}"))
    assert smtp_server.connections == 1
    await asyncio.gather(*(sender.send(account, _message(f"par{i}")) for i in range(10)))
    assert len(smtp_server.messages) == 20
    assert 1 <= smtp_server.connections <= account.max_connections
    assert len({m.peer for m in smtp_server.messages}) == smtp_server.connections
    assert sender.connections_opened == smtp_server.connections


async def test_interleaving_two_servers_keeps_one_connection_each(
    smtp_server, secure_smtp: SecureSmtp, make_sender: MakeSender
) -> None:
    other = secure_smtp()  # plain SMTP, no TLS, no AUTH
    sender = make_sender()
    first, second = smtp_server.account("accA"), other.account("accB")
    for i in range(10):
        await sender.send(first, _message(f"A{i}", "accA"))
        await sender.send(second, _message(f"B{i}", "accB"))
    assert (len(smtp_server.messages), len(other.messages)) == (10, 10)
    assert (smtp_server.connections, other.connections) == (1, 1)


async def test_two_accounts_on_one_server_have_a_pool_each(smtp_server, make_sender: MakeSender) -> None:
    sender = make_sender()
    first, second = smtp_server.account("accA"), smtp_server.account("accB")
    for i in range(10):
        await sender.send(first, _message(f"A{i}", "accA"))
        await sender.send(second, _message(f"B{i}", "accB"))
    assert smtp_server.connections == 2
    peers = {
        prefix: {m.peer for m in smtp_server.messages if str(m.email["Subject"]).startswith(f"subject {prefix}")}
        for prefix in "AB"
    }
    assert len(peers["A"]) == len(peers["B"]) == 1
    assert peers["A"] != peers["B"]


# ------------------------------------------------------------------------------------------ TLS


async def test_implicit_tls(secure_smtp: SecureSmtp, make_sender: MakeSender, tls_cert: SelfSignedCert) -> None:
    server = secure_smtp(implicit_tls=True)
    sender = make_sender(tls_context=tls_cert.client_context())
    receipt = await sender.send(server.account(use_tls=True), _message())
    assert receipt.code == 250
    [mail] = server.messages
    assert mail.encrypted
    assert server.starttls_sessions == 0


async def test_implicit_tls_with_an_untrusted_certificate_is_a_temporary_failure(
    secure_smtp: SecureSmtp, make_sender: MakeSender
) -> None:
    server = secure_smtp(implicit_tls=True)
    sender = make_sender()  # the system trust store does not know the self-signed certificate
    with pytest.raises(TransientSendError, match=r"(?i)certificate"):
        await sender.send(server.account(use_tls=True), _message())
    assert server.messages == []


@pytest.mark.parametrize("policy", [StartTls.REQUIRED, StartTls.OPPORTUNISTIC])
async def test_starttls_offered_encrypts_the_session(
    secure_smtp: SecureSmtp, make_sender: MakeSender, tls_cert: SelfSignedCert, policy: StartTls
) -> None:
    server = secure_smtp(starttls=True, require_starttls=True)
    sender = make_sender(tls_context=tls_cert.client_context())
    await sender.send(server.account(starttls=policy), _message("m1"))
    await sender.send(server.account(starttls=policy), _message("m2"))
    assert [m.encrypted for m in server.messages] == [True, True]
    assert server.starttls_sessions == server.connections == 1


async def test_starttls_off_stays_plain_even_when_offered(
    secure_smtp: SecureSmtp, make_sender: MakeSender, tls_cert: SelfSignedCert
) -> None:
    server = secure_smtp(starttls=True)
    sender = make_sender(tls_context=tls_cert.client_context())
    await sender.send(server.account(starttls=StartTls.OFF), _message())
    [mail] = server.messages
    assert not mail.encrypted
    assert server.starttls_sessions == 0


async def test_starttls_off_against_a_server_that_requires_it_is_refused_permanently(
    secure_smtp: SecureSmtp, make_sender: MakeSender
) -> None:
    server = secure_smtp(starttls=True, require_starttls=True)
    with pytest.raises(PermanentSendError) as caught:
        await make_sender().send(server.account(starttls=StartTls.OFF), _message())
    assert caught.value.code == 530
    assert server.messages == []


async def test_starttls_required_but_not_offered_is_a_temporary_failure(smtp_server, make_sender: MakeSender) -> None:
    with pytest.raises(TransientSendError, match="does not offer STARTTLS") as caught:
        await make_sender().send(smtp_server.account(starttls=StartTls.REQUIRED), _message())
    assert not caught.value.throttled
    assert smtp_server.messages == []


async def test_starttls_with_an_untrusted_certificate_is_a_temporary_failure(
    secure_smtp: SecureSmtp, make_sender: MakeSender
) -> None:
    server = secure_smtp(starttls=True)
    with pytest.raises(TransientSendError):
        await make_sender().send(server.account(starttls=StartTls.REQUIRED), _message())
    assert server.messages == []


# ------------------------------------------------------------------------------------------ AUTH

USERS = {"mailer": "s3cret"}


async def test_auth_over_starttls_succeeds(
    secure_smtp: SecureSmtp, make_sender: MakeSender, tls_cert: SelfSignedCert
) -> None:
    server = secure_smtp(starttls=True, users=USERS, auth_require_tls=True)
    sender = make_sender(tls_context=tls_cert.client_context())
    account = server.account(user="mailer", password="s3cret")
    await sender.send(account, _message("m1"))
    await sender.send(account, _message("m2"))
    assert server.auth_attempts == [AuthAttempt("mailer", success=True, encrypted=True)]  # once per connection
    assert [(m.login, m.encrypted) for m in server.messages] == [("mailer", True), ("mailer", True)]


async def test_auth_over_implicit_tls_succeeds(
    secure_smtp: SecureSmtp, make_sender: MakeSender, tls_cert: SelfSignedCert
) -> None:
    # aiosmtpd's auth_require_tls only recognises STARTTLS; the session is encrypted from the first byte anyway
    server = secure_smtp(implicit_tls=True, users=USERS, auth_require_tls=False)
    sender = make_sender(tls_context=tls_cert.client_context())
    await sender.send(server.account(use_tls=True, user="mailer", password="s3cret"), _message())
    assert server.auth_attempts == [AuthAttempt("mailer", success=True, encrypted=True)]
    assert server.messages[0].login == "mailer"


async def test_credentials_are_never_sent_over_a_plain_connection(
    secure_smtp: SecureSmtp, make_sender: MakeSender
) -> None:
    server = secure_smtp(users=USERS, auth_require_tls=False)  # AUTH offered in the clear, no STARTTLS
    with pytest.raises(TransientSendError, match="unencrypted connection"):
        await make_sender().send(server.account(user="mailer", password="s3cret"), _message())
    assert server.auth_attempts == []
    assert server.messages == []


async def test_allow_insecure_auth_sends_credentials_in_the_clear(
    secure_smtp: SecureSmtp, make_sender: MakeSender
) -> None:
    server = secure_smtp(users=USERS, auth_require_tls=False)
    account = server.account(user="mailer", password="s3cret", allow_insecure_auth=True)
    await make_sender().send(account, _message())
    assert server.auth_attempts == [AuthAttempt("mailer", success=True, encrypted=False)]
    assert [(m.login, m.encrypted) for m in server.messages] == [("mailer", False)]


async def test_wrong_password_is_a_permanent_failure(
    secure_smtp: SecureSmtp, make_sender: MakeSender, tls_cert: SelfSignedCert
) -> None:
    server = secure_smtp(starttls=True, users=USERS)
    sender = make_sender(tls_context=tls_cert.client_context())
    with pytest.raises(PermanentSendError) as caught:
        await sender.send(server.account(user="mailer", password="wrong"), _message())
    assert caught.value.code == 535
    # aiosmtplib tries each offered mechanism (PLAIN, then LOGIN) before giving up
    assert server.auth_attempts
    assert set(server.auth_attempts) == {AuthAttempt("mailer", success=False, encrypted=True)}
    assert server.messages == []


# ------------------------------------------------------------------------------------------ reply codes

THROTTLING = [
    (421, "4.7.0 try again later"),
    (454, "4.7.0 try again later"),
    (450, "4.7.1 rate limit exceeded, try again later"),
    (451, "4.7.1 too many messages, slow down"),
    (452, "4.5.3 too many recipients this hour"),
]


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
@pytest.mark.parametrize(("code", "text"), THROTTLING)
async def test_throttling_replies_are_temporary_and_throttled(
    smtp_server, make_sender: MakeSender, stage: str, code: int, text: str
) -> None:
    setattr(smtp_server, f"{stage}_reply", f"{code} {text}")
    with pytest.raises(TransientSendError) as caught:
        await make_sender().send(smtp_server.account(), _message())
    assert caught.value.code == code
    assert caught.value.throttled
    assert text in str(caught.value)
    assert smtp_server.messages == []


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
@pytest.mark.parametrize(
    ("code", "text"),
    [(450, "4.2.0 greylisted, try again later"), (451, "4.3.0 try later"), (452, "4.2.2 mailbox full")],
)
async def test_greylisting_and_full_mailboxes_are_temporary_but_not_throttling(
    smtp_server, make_sender: MakeSender, stage: str, code: int, text: str
) -> None:
    setattr(smtp_server, f"{stage}_reply", f"{code} {text}")
    with pytest.raises(TransientSendError) as caught:
        await make_sender().send(smtp_server.account(), _message())
    assert (caught.value.code, caught.value.throttled) == (code, False)


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
async def test_other_temporary_codes_are_not_throttled(smtp_server, make_sender: MakeSender, stage: str) -> None:
    setattr(smtp_server, f"{stage}_reply", "455 4.5.4 cannot accommodate parameters")
    with pytest.raises(TransientSendError) as caught:
        await make_sender().send(smtp_server.account(), _message())
    assert (caught.value.code, caught.value.throttled) == (455, False)


@pytest.mark.parametrize("stage", ["mail", "data"])
@pytest.mark.parametrize("code", [550, 553, 554])
async def test_permanent_codes(smtp_server, make_sender: MakeSender, stage: str, code: int) -> None:
    setattr(smtp_server, f"{stage}_reply", f"{code} 5.7.1 rejected")
    with pytest.raises(PermanentSendError) as caught:
        await make_sender().send(smtp_server.account(), _message())
    assert caught.value.code == code
    assert "rejected" in str(caught.value)
    assert smtp_server.messages == []


async def test_every_recipient_refused_permanently_is_a_permanent_failure(smtp_server, make_sender) -> None:
    smtp_server.rcpt_reply = "550 5.1.1 no such user"
    with pytest.raises(PermanentSendError, match="all recipients refused") as caught:
        await make_sender().send(smtp_server.account(), _message(to=("a@example.org", "b@example.org")))
    assert caught.value.code == 550
    assert "a@example.org" in str(caught.value) and "b@example.org" in str(caught.value)


async def test_mixed_refusals_with_a_temporary_one_are_temporary(smtp_server, make_sender: MakeSender) -> None:
    smtp_server.rcpt_replies["a@example.org"] = "550 5.1.1 no such user"
    smtp_server.rcpt_replies["b@example.org"] = "452 4.2.2 mailbox full"
    with pytest.raises(TransientSendError) as caught:
        await make_sender().send(smtp_server.account(), _message(to=("a@example.org", "b@example.org")))
    assert (caught.value.code, caught.value.throttled) == (452, False)  # a full mailbox is not a rate signal


async def test_partial_refusal_is_a_success_listing_the_refused(smtp_server, make_sender: MakeSender) -> None:
    smtp_server.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    message = _message(to=("ok@example.org", "gone@example.org"), cc=("cc@example.org",))
    receipt = await make_sender().send(smtp_server.account(), message)
    assert receipt.code == 250
    assert receipt.refused == {"gone@example.org": "550 5.1.1 no such user"}
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ("ok@example.org", "cc@example.org")


async def test_connection_refused_is_a_temporary_failure(smtp_server, closed_port: int, make_sender) -> None:
    with pytest.raises(TransientSendError) as caught:
        await make_sender().send(smtp_server.account(port=closed_port), _message())
    assert not caught.value.throttled


async def test_a_421_closes_the_connection_and_the_next_send_reconnects(smtp_server, make_sender) -> None:
    sender = make_sender()
    account = smtp_server.account(max_connections=1)
    smtp_server.mail_reply = "421 4.7.0 closing"
    with pytest.raises(TransientSendError):
        await sender.send(account, _message("m1"))
    smtp_server.mail_reply = None
    await sender.send(account, _message("m2"))
    assert smtp_server.connections == 2
    assert _subjects(smtp_server) == ["subject m2"]


async def test_a_refusal_that_keeps_the_session_reuses_the_connection(smtp_server, make_sender) -> None:
    sender = make_sender()
    account = smtp_server.account(max_connections=1)
    smtp_server.rcpt_reply = "451 4.3.0 try later"
    with pytest.raises(TransientSendError):
        await sender.send(account, _message("m1"))
    smtp_server.data_reply = "554 5.6.0 content rejected"
    smtp_server.rcpt_reply = None
    with pytest.raises(PermanentSendError):
        await sender.send(account, _message("m2"))
    smtp_server.data_reply = None
    await sender.send(account, _message("m3"))
    assert smtp_server.connections == 1  # RSET after each refusal, then the same session goes on
    assert _subjects(smtp_server) == ["subject m3"]


@pytest.mark.parametrize("refusing", [("a@example.org", "b@example.org"), ("a@example.org",)], ids=["all", "first"])
async def test_a_421_to_rcpt_with_several_recipients_is_throttled(
    smtp_server, make_sender: MakeSender, refusing: tuple[str, ...]
) -> None:
    for address in refusing:
        smtp_server.rcpt_replies[address] = "421 4.7.0 too many connections, closing"
    with pytest.raises(TransientSendError) as caught:
        await make_sender().send(smtp_server.account(), _message(to=("a@example.org", "b@example.org")))
    assert (caught.value.code, caught.value.throttled) == (421, True)


# ------------------------------------------------------------------------------------------ faults


async def test_connection_dropped_mid_data_by_a_raw_server(raw_smtp: RawSmtp, make_sender: MakeSender) -> None:
    server = raw_smtp("drop_in_data")
    sender = make_sender()
    account = server.account(max_connections=1)
    with pytest.raises(TransientSendError, match="connection lost") as caught:
        await sender.send(account, _message("m1"))
    assert not caught.value.throttled
    await sender.send(account, _message("m2"))
    assert server.connections == 2  # the broken connection was not reused
    [mail] = server.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("sender@example.com", ["rcpt@example.org"])
    assert b"Subject: subject m2" in mail.data


async def test_connection_dropped_mid_data_by_aiosmtpd(smtp_server, make_sender: MakeSender) -> None:
    original = smtp_server.handle_DATA
    drops: list[tuple[str, int]] = []

    async def hang_up_once(server: SMTP, session: Session, envelope: Envelope) -> str:
        if drops:
            return str(await original(server, session, envelope))
        drops.append(session.peer)
        assert server.transport is not None
        server.transport.close()
        await asyncio.Event().wait()  # cancelled when aiosmtpd notices the closed connection
        raise AssertionError("unreachable")

    smtp_server.handle_DATA = hang_up_once
    sender = make_sender()
    account = smtp_server.account(max_connections=1)
    with pytest.raises(TransientSendError, match="connection lost"):
        await sender.send(account, _message("m1"))
    await sender.send(account, _message("m2"))
    assert smtp_server.connections == 2
    assert [m.peer for m in smtp_server.messages] != drops
    assert _subjects(smtp_server) == ["subject m2"]


async def test_a_server_that_never_greets_times_out(raw_smtp: RawSmtp, make_sender: MakeSender) -> None:
    server = raw_smtp("hang")
    sender = make_sender(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransientSendError, match=r"(?i)time(d)? ?out") as caught:
        await sender.send(server.account(), _message())
    assert time.monotonic() - started < 3.0
    assert not caught.value.throttled
    assert server.connections == 1


# ------------------------------------------------------------------------------------------ the message on the wire


async def test_the_message_as_the_server_receives_it(smtp_server, make_sender: MakeSender) -> None:
    pdf = b"%PDF-1.4 \x00\xff binary"
    message = _message(
        "rich",
        from_addr="Jörg Müller <joerg@example.com>",
        to=("Zoë Ångström <zoe@example.org>",),
        cc=("cc@example.org",),
        bcc=("Hidden <hidden@example.org>",),
        subject="Grüße aus Zürich — 你好",
        body="Plain text, naïve café.\n",
        html_body="<p>HTML, <b>naïve</b> café.</p>",
        attachments=(Attachment("Bericht März.pdf", base64.b64encode(pdf).decode(), "application/pdf"),),
        message_id="<given-id@example.com>",
        return_path="bounces+rich@example.com",
    )
    sender = make_sender()
    await sender.send(smtp_server.account(), message)
    await sender.send(smtp_server.account(), _message("plain"))
    rich, plain = smtp_server.messages

    assert rich.mail_from == "bounces+rich@example.com"
    assert rich.rcpt_tos == ("zoe@example.org", "cc@example.org", "hidden@example.org")
    assert b"hidden@example.org" not in rich.content
    mail = rich.email
    assert "Bcc" not in mail
    assert mail["Subject"] == "Grüße aus Zürich — 你好"
    assert mail["From"].addresses[0].display_name == "Jörg Müller"
    assert mail["From"].addresses[0].addr_spec == "joerg@example.com"
    assert mail["To"].addresses[0].display_name == "Zoë Ångström"
    assert mail["Message-ID"] == "<given-id@example.com>"
    assert email.utils.parsedate_to_datetime(mail["Date"]).timestamp() == T0
    assert mail.get_content_type() == "multipart/mixed"
    alternative = next(part for part in mail.iter_parts() if part.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    plain_part, html_part = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain_part is not None and html_part is not None
    # inside a multipart the CRLF before a boundary belongs to the boundary (RFC 2046): compare without it
    assert plain_part.get_content().rstrip("\r\n") == "Plain text, naïve café."
    assert html_part.get_content().rstrip("\r\n") == "<p>HTML, <b>naïve</b> café.</p>"
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "Bericht März.pdf"
    assert attachment.get_payload(decode=True) == pdf

    generated = plain.email
    assert plain.mail_from == "sender@example.com"
    assert generated["Message-ID"].endswith("@example.com>")
    assert generated["Message-ID"] != mail["Message-ID"]
    assert generated["Date"]
    assert generated.get_content_type() == "text/plain"


# ------------------------------------------------------------------------------------------ dispatcher


async def test_retry_schedule_until_the_final_error(
    smtp_server, make_sender: MakeSender, dispatch_world: DispatchWorld
) -> None:
    world = dispatch_world
    rcpts = _count_calls(smtp_server, "RCPT")
    smtp_server.rcpt_reply = "451 4.3.0 greylisted, try later"
    policy = RetryPolicy(base_seconds=10, factor=2, max_delay_seconds=1000, max_attempts=4, jitter=0)
    dispatcher = world.dispatcher(make_sender(), DispatchConfig(retry=policy, throttle_seconds=0))
    await world.add_account(smtp_server.account("acc"))
    await world.enqueue(_message("M1"))

    expected_at = [T0 + 10, T0 + 30, T0 + 70]  # delays 10, 20, 40 after attempts at T0, T0+10, T0+30
    for attempt, due in enumerate(expected_at, start=1):
        await dispatcher.tick()
        record = await world.record("M1")
        assert (record.status, record.attempts, record.deferred_ts) == (MessageStatus.QUEUED, attempt, due)
        world.clock.set(due - 1)
        await dispatcher.tick()  # not due yet: nothing is tried
        assert len(rcpts) == attempt
        world.clock.set(due)

    await dispatcher.tick()
    record = await world.record("M1")
    assert record.status is MessageStatus.ERROR
    assert record.error_ts == T0 + 70
    assert record.error is not None and record.error.startswith("gave up after 4 attempts over 1m: last error 451")
    attempts = await world.messages.attempts("M1")
    assert [(a.ts, a.code, a.outcome.value) for a in attempts] == [
        (T0, 451, "temporary_failure"),
        (T0 + 10, 451, "temporary_failure"),
        (T0 + 30, 451, "temporary_failure"),
        (T0 + 70, 451, "temporary_failure"),
    ]
    assert len(rcpts) == 4
    assert smtp_server.messages == []


@pytest.mark.parametrize("max_connections", [1, 3])
async def test_throttle_pause_holds_the_rest_of_the_batch(
    smtp_server, make_sender: MakeSender, dispatch_world: DispatchWorld, max_connections: int
) -> None:
    world = dispatch_world
    mails = _count_calls(smtp_server, "MAIL")
    smtp_server.mail_reply = "421 4.7.0 too fast, closing"
    config = DispatchConfig(throttle_seconds=30, retry=RetryPolicy(base_seconds=10, jitter=0))
    dispatcher = world.dispatcher(make_sender(), config)
    await world.add_account(smtp_server.account("acc", max_connections=max_connections))
    ids = [f"M{i}" for i in range(6)]
    await world.enqueue(*(_message(mid) for mid in ids))

    await dispatcher.tick()
    # only the sends already in flight (one per connection) met the 421; the rest of the batch was not tried
    assert 1 <= len(mails) <= max_connections
    records = [await world.record(mid) for mid in ids]
    tried = [r for r in records if r.attempts == 1]
    held = [r for r in records if r.attempts == 0]
    assert len(tried) == len(mails) and len(held) == len(ids) - len(mails)
    assert {r.deferred_ts for r in tried} == {T0 + 10}  # the retry policy
    assert {r.deferred_ts for r in held} == {T0 + 30}  # the throttling pause
    assert {r.status for r in records} == {MessageStatus.QUEUED}

    smtp_server.mail_reply = None
    world.clock.set(T0 + 29)  # the retries are due, but the account is still paused
    await dispatcher.tick()
    assert len(mails) == len(tried)
    world.clock.set(T0 + 30)
    await dispatcher.tick()
    assert sorted(_subjects(smtp_server)) == [f"subject {mid}" for mid in ids]
    for mid in ids:
        assert (await world.record(mid)).status is MessageStatus.SENT


# ------------------------------------------------------------------------------------------ through the API


async def _api_with_real_smtp(start_api: StartApi, smtp_server: Any, **delivery: Any) -> httpx.AsyncClient:
    client = await start_api(
        delivery={"test_mode": False, "send_interval_seconds": 3600, **delivery},
        smtp={"backend": "aiosmtplib", "timeout_seconds": 3, "helo_hostname": "client.test"},
        clock={"backend": "frozen"},
    )
    account = {"id": "accA", "host": smtp_server.host, "port": smtp_server.port, "max_connections": 2}
    assert (await client.post("/account", json=account)).status_code == 200
    return client


async def _add(client: httpx.AsyncClient, *ids: str) -> None:
    entries = [
        {"id": mid, "account_id": "accA", "from": "Shop <shop@example.com>", "to": ["ann@example.org"], "subject": mid}
        for mid in ids
    ]
    answer = (await client.post("/commands/add-messages", json={"messages": entries})).json()
    assert answer["rejected"] == [], answer


async def test_api_sends_through_a_real_smtp_server(start_api: StartApi, smtp_server) -> None:
    client = await _api_with_real_smtp(start_api, smtp_server)
    await _add(client, *(f"M{i}" for i in range(5)))
    await client.app.state.services.runner.run_once()  # type: ignore[attr-defined]
    assert sorted(_subjects(smtp_server)) == [f"M{i}" for i in range(5)]
    assert smtp_server.connections <= 2
    detail = (await client.get("/messages/M0")).json()
    assert detail["message"]["state"] == "sent"
    assert detail["message"]["sent_ts"] == T0
    assert [(a["outcome"], a["code"]) for a in detail["attempts"]] == [("sent", 250)]


async def test_api_retries_with_growing_delays_then_gives_up(start_api: StartApi, smtp_server) -> None:
    client = await _api_with_real_smtp(
        start_api, smtp_server, retry_base_seconds=100, retry_factor=3, retry_max_attempts=3, throttle_seconds=0
    )
    smtp_server.rcpt_reply = "451 4.7.1 greylisted"
    clock = client.app.state.container.clock()  # type: ignore[attr-defined]
    runner = client.app.state.services.runner  # type: ignore[attr-defined]
    await _add(client, "M1")
    deferred: list[float] = []
    for _ in range(2):
        await runner.run_once()
        message = (await client.get("/messages/M1")).json()["message"]
        assert message["state"] == "deferred"
        deferred.append(message["deferred_ts"])
        clock.set(message["deferred_ts"])
    await runner.run_once()

    # the retry policy's jitter (10%) is not configurable through settings: check the bounds
    first_delay, second_delay = deferred[0] - T0, deferred[1] - deferred[0]
    assert 90 <= first_delay <= 110
    assert 270 <= second_delay <= 330
    detail = (await client.get("/messages/M1")).json()
    assert detail["message"]["state"] == "error"
    assert detail["message"]["error"].startswith("gave up after 3 attempts")
    assert "451" in detail["message"]["error"]
    assert [(a["ts"], a["code"], a["outcome"]) for a in detail["attempts"]] == [
        (T0, 451, "temporary_failure"),
        (deferred[0], 451, "temporary_failure"),
        (deferred[1], 451, "temporary_failure"),
    ]
    assert smtp_server.messages == []
