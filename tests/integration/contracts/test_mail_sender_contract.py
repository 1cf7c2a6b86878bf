"""MailSender contract: RecordingMailSender and AiosmtplibMailSender (against a real aiosmtpd server).

Both must put the same message on the wire; `harness.delivered()` reads it back from the
recording sender's `sent` list or from what the SMTP server accepted.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import email.utils
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from adapters.memory.clock import FrozenClock
from adapters.memory.mail_sender import RecordingMailSender
from adapters.smtp.sender import AiosmtplibMailSender
from core.model import Account, Attachment, ContentType, Message, StartTls
from ports.mail_sender import MailSender, PermanentSendError, SendReceipt, TransientSendError

T0 = 1_800_000_000.0


@dataclass(frozen=True)
class Delivered:
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def email(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SenderHarness:
    name: str
    sender: MailSender
    account: Account
    delivered: Callable[[], list[Delivered]]


def _message(message_id: str = "m1", /, **fields: object) -> Message:
    values: dict[str, object] = {
        "from_addr": "Sender Name <sender@example.com>",
        "to": ("rcpt@example.org",),
        "subject": "Hello",
        "body": "Hi there.\n",
    }
    values.update(fields)
    return Message(message_id, "acc", **values)  # type: ignore[arg-type]


@pytest.fixture
def sender_clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def aiosmtplib_sender(sender_clock: FrozenClock) -> AsyncIterator[AiosmtplibMailSender]:
    sender = AiosmtplibMailSender(sender_clock, timeout=5.0)
    try:
        yield sender
    finally:
        await sender.close()


@pytest.fixture(params=["recording", "aiosmtplib"])
def harness(request: pytest.FixtureRequest) -> SenderHarness:
    if request.param == "recording":
        recording = RecordingMailSender(FrozenClock(T0))
        return SenderHarness(
            "recording",
            recording,
            Account("acc", host="smtp.invalid", port=25),
            lambda: [Delivered(s.envelope_from, s.recipients, s.data) for s in recording.sent],
        )
    server = request.getfixturevalue("smtp_server")
    sender = request.getfixturevalue("aiosmtplib_sender")
    return SenderHarness(
        "aiosmtplib",
        sender,
        server.account("acc"),
        lambda: [Delivered(m.mail_from, m.rcpt_tos, m.content) for m in server.messages],
    )


def _text(part: EmailMessage) -> str:
    """A text part's content with the wire's CRLF line endings turned back into LF."""
    return str(part.get_content()).replace("\r\n", "\n")


async def _send_one(harness: SenderHarness, message: Message) -> tuple[SendReceipt, Delivered]:
    receipt = await harness.sender.send(harness.account, message)
    [delivered] = harness.delivered()
    return receipt, delivered


async def test_message_arrives_with_its_headers(harness: SenderHarness) -> None:
    message = _message(
        cc=("Carbon <cc@example.org>",),
        reply_to="replies@example.com",
        headers=(("X-Campaign", "spring-42"),),
    )
    receipt, delivered = await _send_one(harness, message)
    assert receipt.code == 250
    assert receipt.refused == {}
    mail = delivered.email
    assert mail["From"] == "Sender Name <sender@example.com>"
    assert mail["To"] == "rcpt@example.org"
    assert mail["Cc"] == "Carbon <cc@example.org>"
    assert mail["Reply-To"] == "replies@example.com"
    assert mail["Subject"] == "Hello"
    assert mail["X-Campaign"] == "spring-42"
    assert mail.get_content_type() == "text/plain"
    assert _text(mail) == "Hi there.\n"
    assert delivered.recipients == ("rcpt@example.org", "cc@example.org")


async def test_bcc_is_in_the_envelope_only(harness: SenderHarness) -> None:
    message = _message(cc=("cc@example.org",), bcc=("hidden@example.org", "Secret <secret@example.org>"))
    _, delivered = await _send_one(harness, message)
    assert delivered.recipients == ("rcpt@example.org", "cc@example.org", "hidden@example.org", "secret@example.org")
    assert "Bcc" not in delivered.email
    assert b"hidden@example.org" not in delivered.data
    assert b"secret@example.org" not in delivered.data


async def test_envelope_recipients_are_deduplicated(harness: SenderHarness) -> None:
    message = _message(to=("a@example.org", "A <a@example.org>"), cc=("b@example.org",), bcc=("b@example.org",))
    _, delivered = await _send_one(harness, message)
    assert delivered.recipients == ("a@example.org", "b@example.org")


async def test_envelope_sender_is_the_from_address_by_default(harness: SenderHarness) -> None:
    _, delivered = await _send_one(harness, _message())
    assert delivered.envelope_from == "sender@example.com"


async def test_envelope_sender_is_return_path_when_given(harness: SenderHarness) -> None:
    _, delivered = await _send_one(harness, _message(return_path="<bounces+m1@example.com>"))
    assert delivered.envelope_from == "bounces+m1@example.com"
    assert delivered.email["From"] == "Sender Name <sender@example.com>"


async def test_message_id_and_date_headers(harness: SenderHarness) -> None:
    await harness.sender.send(harness.account, _message("generated"))
    await harness.sender.send(harness.account, _message("given", message_id="<given@example.com>"))
    generated, given = (d.email for d in harness.delivered())
    assert generated["Message-ID"].startswith("<")
    assert generated["Message-ID"].endswith("@example.com>")
    assert given["Message-ID"] == "<given@example.com>"
    for mail in (generated, given):
        assert email.utils.parsedate_to_datetime(mail["Date"]).timestamp() == T0


async def test_html_content_type(harness: SenderHarness) -> None:
    _, delivered = await _send_one(harness, _message(body="<p>Hi <b>there</b></p>", content_type=ContentType.HTML))
    mail = delivered.email
    assert mail.get_content_type() == "text/html"
    assert _text(mail) == "<p>Hi <b>there</b></p>\n"


async def test_attachments(harness: SenderHarness) -> None:
    pdf = b"%PDF-1.4 fake \x00\xff binary"
    message = _message(
        content_type=ContentType.HTML,
        body="<p>see attached</p>",
        attachments=(
            Attachment("report.pdf", base64.b64encode(pdf).decode(), "application/pdf"),
            Attachment("notes.txt", base64.b64encode(b"plain notes").decode(), "text/plain"),
        ),
    )
    _, delivered = await _send_one(harness, message)
    mail = delivered.email
    assert mail.get_content_type() == "multipart/mixed"
    body = mail.get_body(("html",))
    assert body is not None
    assert _text(body).rstrip("\n") == "<p>see attached</p>"
    attachments = {part.get_filename(): part for part in mail.iter_attachments()}
    assert sorted(attachments) == ["notes.txt", "report.pdf"]
    assert attachments["report.pdf"].get_content_type() == "application/pdf"
    assert attachments["report.pdf"].get_payload(decode=True) == pdf
    assert attachments["notes.txt"].get_payload(decode=True) == b"plain notes"


async def test_html_body_makes_a_multipart_alternative(harness: SenderHarness) -> None:
    _, delivered = await _send_one(harness, _message(body="plain version\n", html_body="<p>html version</p>"))
    mail = delivered.email
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None
    assert _text(plain).rstrip("\n") == "plain version"
    assert _text(html).rstrip("\n") == "<p>html version</p>"


async def test_non_ascii_subject_and_body(harness: SenderHarness) -> None:
    _, delivered = await _send_one(harness, _message(subject="Grüße — 你好", body="Zürich ✓\n"))
    mail = delivered.email
    assert mail["Subject"] == "Grüße — 你好"
    assert _text(mail) == "Zürich ✓\n"


async def test_close_is_safe_and_idempotent(harness: SenderHarness) -> None:
    await harness.sender.send(harness.account, _message())
    await harness.sender.close()
    await harness.sender.close()


# ------------------------------------------------------------------------- aiosmtplib only


async def test_sends_to_one_account_reuse_one_connection(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account("acc")
    for i in range(4):
        await aiosmtplib_sender.send(account, _message(f"m{i}"))
    assert len(smtp_server.messages) == 4
    assert smtp_server.connections == 1
    assert len({m.peer for m in smtp_server.messages}) == 1


async def test_connections_opened_counts_real_connections(smtp_server, aiosmtplib_sender) -> None:
    for i in range(3):
        await aiosmtplib_sender.send(smtp_server.account("acc"), _message(f"m{i}"))
    assert aiosmtplib_sender.connections_opened == smtp_server.connections == 1


@pytest.mark.parametrize("max_connections", [1, 2])
async def test_concurrent_sends_stay_within_max_connections(smtp_server, aiosmtplib_sender, max_connections) -> None:
    account = smtp_server.account("acc", max_connections=max_connections)
    await asyncio.gather(*(aiosmtplib_sender.send(account, _message(f"m{i}")) for i in range(8)))
    assert len(smtp_server.messages) == 8
    assert 1 <= smtp_server.connections <= max_connections


async def test_a_connection_idle_beyond_its_ttl_is_replaced(smtp_server, aiosmtplib_sender, sender_clock) -> None:
    account = smtp_server.account("acc", ttl_seconds=60.0)
    await aiosmtplib_sender.send(account, _message("m1"))
    sender_clock.advance(59)
    await aiosmtplib_sender.send(account, _message("m2"))
    assert smtp_server.connections == 1
    sender_clock.advance(61)
    await aiosmtplib_sender.send(account, _message("m3"))
    assert smtp_server.connections == 2
    assert len(smtp_server.messages) == 3


async def test_close_idle_closes_expired_connections_and_forgotten_accounts(
    smtp_server, aiosmtplib_sender, sender_clock
) -> None:
    kept, expired, forgotten = (smtp_server.account(a, ttl_seconds=60.0) for a in ("kept", "expired", "forgotten"))
    await aiosmtplib_sender.send(expired, _message("m1"))
    sender_clock.advance(50)
    for account in (kept, forgotten):
        await aiosmtplib_sender.send(account, _message(f"m-{account.id}"))
    sender_clock.advance(20)
    await aiosmtplib_sender.close_idle(sender_clock.now(), {"kept", "expired"})
    assert smtp_server.connections == 3
    for account in (kept, expired, forgotten):
        await aiosmtplib_sender.send(account, _message(f"again-{account.id}"))
    assert smtp_server.connections == 5  # only "kept" reused its connection


async def test_each_account_has_its_own_connection(smtp_server, aiosmtplib_sender) -> None:
    first, second = smtp_server.account("first"), smtp_server.account("second")
    for account in (first, second, first, second):
        await aiosmtplib_sender.send(account, _message())
    assert smtp_server.connections == 2


async def test_changed_account_settings_open_a_new_connection(smtp_server, aiosmtplib_sender) -> None:
    await aiosmtplib_sender.send(smtp_server.account("acc"), _message("m1"))
    await aiosmtplib_sender.send(smtp_server.account("acc", user="someone"), _message("m2"))
    assert smtp_server.connections == 2
    assert len(smtp_server.messages) == 2


async def test_close_closes_connections_and_a_later_send_reconnects(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account("acc")
    await aiosmtplib_sender.send(account, _message("m1"))
    await aiosmtplib_sender.close()
    await aiosmtplib_sender.send(account, _message("m2"))
    assert smtp_server.connections == 2
    assert len(smtp_server.messages) == 2


async def test_all_recipients_refused_with_5xx_is_permanent(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.rcpt_reply = "550 no such user"
    with pytest.raises(PermanentSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(), _message(to=("a@example.org", "b@example.org")))
    assert caught.value.code == 550
    assert "no such user" in str(caught.value)
    assert smtp_server.messages == []


async def test_all_recipients_refused_with_4xx_is_transient(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.rcpt_reply = "451 try later"
    with pytest.raises(TransientSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(), _message())
    assert caught.value.code == 451
    assert smtp_server.messages == []


async def test_recipients_refused_with_mixed_codes_is_transient(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.rcpt_replies.update({"a@example.org": "550 no such user", "b@example.org": "452 mailbox full"})
    with pytest.raises(TransientSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(), _message(to=("a@example.org", "b@example.org")))
    assert caught.value.code == 452


async def test_partial_refusal_is_a_send_with_refused_recipients(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.rcpt_replies["bad@example.org"] = "550 no such user"
    receipt = await aiosmtplib_sender.send(smtp_server.account(), _message(to=("good@example.org", "bad@example.org")))
    assert list(receipt.refused) == ["bad@example.org"]
    assert "550" in receipt.refused["bad@example.org"]
    assert "no such user" in receipt.refused["bad@example.org"]
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("good@example.org",)
    assert "bad@example.org" in received.email["To"]


async def test_data_refused_with_5xx_is_permanent(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.data_reply = "554 5.7.1 message rejected as spam"
    with pytest.raises(PermanentSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(), _message())
    assert caught.value.code == 554


async def test_data_refused_with_4xx_is_transient_and_throttled(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.data_reply = "451 4.7.1 slow down"
    with pytest.raises(TransientSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(), _message())
    assert caught.value.code == 451
    assert caught.value.throttled is True


async def test_sender_refused_with_5xx_is_permanent(smtp_server, aiosmtplib_sender) -> None:
    smtp_server.mail_reply = "553 sender not allowed"
    with pytest.raises(PermanentSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(), _message())
    assert caught.value.code == 553


async def test_a_421_reply_is_transient_and_the_connection_is_not_reused(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account()
    smtp_server.data_reply = "421 4.3.2 shutting down"
    with pytest.raises(TransientSendError) as caught:
        await aiosmtplib_sender.send(account, _message("m1"))
    assert caught.value.code == 421
    assert caught.value.throttled is True
    smtp_server.data_reply = None
    await aiosmtplib_sender.send(account, _message("m2"))
    assert smtp_server.connections == 2


async def test_starttls_required_but_not_offered_fails_before_sending(smtp_server, aiosmtplib_sender) -> None:
    with pytest.raises(TransientSendError) as caught:
        await aiosmtplib_sender.send(smtp_server.account(starttls=StartTls.REQUIRED), _message())
    assert "STARTTLS" in str(caught.value)
    assert smtp_server.messages == []


async def test_credentials_are_not_sent_over_a_plain_connection(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account(user="mailer", password="s3cret")
    with pytest.raises(TransientSendError) as caught:
        await aiosmtplib_sender.send(account, _message())
    assert "unencrypted" in str(caught.value)
    assert smtp_server.messages == []


async def test_closed_port_is_transient(closed_port, aiosmtplib_sender) -> None:
    account = Account("down", host="127.0.0.1", port=closed_port)
    with pytest.raises(TransientSendError):
        await aiosmtplib_sender.send(account, _message())


async def test_the_sender_recovers_after_a_failure(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account()
    smtp_server.rcpt_reply = "550 no such user"
    with pytest.raises(PermanentSendError):
        await aiosmtplib_sender.send(account, _message("m1"))
    smtp_server.rcpt_reply = None
    smtp_server.data_reply = "451 later"
    with pytest.raises(TransientSendError):
        await aiosmtplib_sender.send(account, _message("m2"))
    smtp_server.data_reply = None
    await aiosmtplib_sender.send(account, _message("m3"))
    assert [m.email["Subject"] for m in smtp_server.messages] == ["Hello"]


async def test_a_connection_the_server_closed_while_idle_is_replaced(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account()
    await aiosmtplib_sender.send(account, _message("m1"))
    smtp_server.disconnect_all()
    await asyncio.sleep(0.1)  # idle: the client has seen the hang-up before the next send
    await aiosmtplib_sender.send(account, _message("m2"))
    assert len(smtp_server.messages) == 2
    assert smtp_server.connections == 2


async def test_a_hang_up_racing_a_send_costs_at_most_one_transient_failure(smtp_server, aiosmtplib_sender) -> None:
    account = smtp_server.account()
    await aiosmtplib_sender.send(account, _message("m1"))
    smtp_server.disconnect_all()
    try:
        await aiosmtplib_sender.send(account, _message("m2"))
    except TransientSendError:
        # the stale connection is dropped on failure; the retry goes through on a fresh one
        await aiosmtplib_sender.send(account, _message("m2"))
    assert len(smtp_server.messages) == 2
    assert smtp_server.connections == 2
