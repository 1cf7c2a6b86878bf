"""Build the wire bytes and the SMTP envelope for a Message.

`message_bytes` uses the fast renderer (mime.py) and falls back to email.message.EmailMessage for
what only the stdlib handles (non-ASCII local parts, which need SMTPUTF8).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

from adapters.smtp import mime
from core.model import ContentType, Message


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]


def addr_spec(value: str) -> str:
    """'Name <a@b>' -> 'a@b'; a bare address is returned stripped."""
    text = value.strip()
    if text.endswith(">") and "<" in text:
        return text[text.rindex("<") + 1 : -1].strip()
    return text


def envelope_for(message: Message) -> Envelope:
    """Envelope sender is return_path when given, else the From address; recipients de-duplicated."""
    sender = addr_spec(message.return_path.strip("<> ")) if message.return_path else addr_spec(message.from_addr)
    seen: dict[str, None] = {}
    for recipient in message.recipients:
        seen.setdefault(addr_spec(recipient), None)
    return Envelope(sender, tuple(seen))


def message_id_for(message: Message) -> str:
    if message.message_id:
        mid = message.message_id.strip()
        return mid if mid.startswith("<") else f"<{mid}>"
    domain = addr_spec(message.from_addr).rpartition("@")[2] or "asyncmail.invalid"
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "asyncmail.invalid"
    # Derived from the message's identity, so a repeated send (the documented duplicate window) carries
    # the same Message-ID and receivers can drop it.
    digest = hashlib.sha256(f"{message.account_id}\x00{message.id}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def message_bytes(message: Message, now: float) -> bytes:
    """The message as it goes on the wire. Bcc recipients are in the envelope only, never in a header."""
    message_id = message_id_for(message)
    try:
        return mime.render(message, now, message_id)
    except mime.NeedsStdlib:
        return build_email(message, now, message_id).as_bytes()


def build_email(message: Message, now: float, message_id: str) -> EmailMessage:
    utf8 = not all(addr_spec(a).isascii() for a in (message.from_addr, *message.to, *message.cc))
    mail = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    mail["From"] = message.from_addr
    mail["To"] = ", ".join(message.to)
    if message.cc:
        mail["Cc"] = ", ".join(message.cc)
    if message.reply_to:
        mail["Reply-To"] = message.reply_to
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.formatdate(now, usegmt=True)
    mail["Message-ID"] = message_id
    for name, value in message.headers:
        mail[name] = value
    mail.set_content(message.body, subtype="html" if message.content_type is ContentType.HTML else "plain")
    if message.html_body is not None:
        mail.add_alternative(message.html_body, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        mail.add_attachment(
            base64.b64decode(attachment.content_b64),
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return mail
