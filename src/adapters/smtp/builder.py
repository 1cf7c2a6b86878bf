"""Build the RFC 5322 message and the SMTP envelope for a Message."""

from __future__ import annotations

import base64
import email.utils
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP

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
    sender = addr_spec(message.return_path.strip("<> ")) if message.return_path else addr_spec(message.from_addr)
    seen: dict[str, None] = {}
    for recipient in message.recipients:
        seen.setdefault(addr_spec(recipient), None)
    return Envelope(sender, tuple(seen))


def build_email(message: Message, now: float) -> EmailMessage:
    """The message as it goes on the wire. Bcc recipients are in the envelope only, never in a header."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = message.from_addr
    mail["To"] = ", ".join(message.to)
    if message.cc:
        mail["Cc"] = ", ".join(message.cc)
    if message.reply_to:
        mail["Reply-To"] = message.reply_to
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.formatdate(now, usegmt=True)
    mail["Message-ID"] = message.message_id or email.utils.make_msgid(domain=_domain_of(message.from_addr))
    for name, value in message.headers:
        mail[name] = value
    mail.set_content(message.body, subtype="html" if message.content_type is ContentType.HTML else "plain")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        mail.add_attachment(
            base64.b64decode(attachment.content_b64),
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return mail


def _domain_of(address: str) -> str:
    spec = addr_spec(address)
    try:
        return Address(addr_spec=spec).domain or "localhost"
    except (ValueError, IndexError):
        return spec.rpartition("@")[2] or "localhost"
