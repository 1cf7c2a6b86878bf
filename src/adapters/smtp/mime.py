"""Render a Message to RFC 5322 bytes without email.message.EmailMessage (several times faster).

Header values that are not ASCII are RFC 2047 encoded; bodies are 7bit when they can be, otherwise
quoted-printable (text) or base64 (attachments); lines end in CRLF. Bcc never appears.
Addresses whose local part is not ASCII would need SMTPUTF8: those messages are rendered by the
stdlib builder instead (see builder.py).
"""

from __future__ import annotations

import base64
import email.utils
import quopri
import uuid
from email.header import Header

from core.model import Attachment, ContentType, Message

CRLF = b"\r\n"
_MAX_LINE = 998


class NeedsStdlib(Exception):
    """The message needs a feature this renderer leaves to the stdlib builder."""


def render(message: Message, now: float, message_id: str) -> bytes:
    headers: list[tuple[str, str]] = [
        ("From", _address_list([message.from_addr])),
        ("To", _address_list(message.to)),
    ]
    if message.cc:
        headers.append(("Cc", _address_list(message.cc)))
    if message.reply_to:
        headers.append(("Reply-To", _address_list([message.reply_to])))
    headers += [
        ("Subject", _text(message.subject)),
        ("Date", email.utils.formatdate(now, usegmt=True)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
    ]
    headers += [(name, _text(value)) for name, value in message.headers]
    out = bytearray()
    for name, value in headers:
        out += _header_line(name, value)
    out += _body(message)
    return bytes(out)


def _body(message: Message) -> bytes:
    main_subtype = "html" if message.content_type is ContentType.HTML else "plain"
    text_part = _text_part(message.body, main_subtype)
    if message.html_body is not None:
        text_part = _multipart("alternative", [text_part, _text_part(message.html_body, "html")])
    if not message.attachments:
        return text_part
    return _multipart("mixed", [text_part, *(_attachment_part(a) for a in message.attachments)])


def _text_part(text: str, subtype: str) -> bytes:
    lines = text.splitlines()
    if text.isascii() and all(len(line) <= _MAX_LINE for line in lines):
        encoding, payload = "7bit", "\r\n".join(lines).encode("ascii") + CRLF
    else:
        normalized = "\n".join(lines).encode("utf-8", "surrogateescape")
        encoding, payload = "quoted-printable", quopri.encodestring(normalized).replace(b"\n", b"\r\n")
        if not payload.endswith(CRLF):
            payload += CRLF
    head = (f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n').encode(
        "ascii"
    )
    return head + payload


def _attachment_part(attachment: Attachment) -> bytes:
    data = base64.b64decode(attachment.content_b64)
    filename = attachment.filename
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        disposition = f'attachment; filename="{filename}"'
    else:
        disposition = "attachment; filename*=utf-8''" + _percent(filename)
    head = (
        f"Content-Type: {attachment.mime_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: {disposition}\r\n\r\n"
    ).encode("ascii")
    return head + base64.encodebytes(data).replace(b"\n", b"\r\n")


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    boundary = "=_am_" + uuid.uuid4().hex
    out = bytearray(f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode("ascii"))
    for part in parts:  # the CRLF before a delimiter belongs to the delimiter, not to the part
        out += f"--{boundary}\r\n".encode("ascii") + part + CRLF
    out += f"--{boundary}--\r\n".encode("ascii")
    return bytes(out)


def _percent(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _text(value: str) -> str:
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=76, linesep="\r\n")


def _address_list(addresses: list[str] | tuple[str, ...]) -> str:
    return ", ".join(_address(a) for a in addresses)


def _address(value: str) -> str:
    name, addr = _split_address(value)
    if not addr.isascii():
        local, _, domain = addr.rpartition("@")
        if not local.isascii():
            raise NeedsStdlib("non-ASCII local part requires SMTPUTF8")
        addr = f"{local}@{domain.encode('idna').decode('ascii')}"
    if not name:
        return addr
    if name.isascii():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>'
    encoded = Header(name, "utf-8").encode(linesep="\r\n")
    return f"{encoded} <{addr}>"


def _split_address(value: str) -> tuple[str, str]:
    """'"Doe, J" <d@e.org>' -> ('Doe, J', 'd@e.org'); a bare address has no name."""
    text = value.strip()
    if not (text.endswith(">") and "<" in text):
        return "", text
    cut = text.rindex("<")
    name, addr = text[:cut].strip(), text[cut + 1 : -1].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return name, addr


def _header_line(name: str, value: str) -> bytes:
    line = f"{name}: {value}"
    if len(line) <= 78 or "=?" in value:
        return line.encode("ascii", "surrogateescape") + CRLF
    return _fold(line).encode("ascii", "surrogateescape") + CRLF


def _fold(line: str) -> str:
    """Fold at spaces so physical lines stay under 78 characters where possible."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate) > 78 and current:
            out.append(current)
            current = " " + word
        else:
            current = candidate
    out.append(current)
    return "\r\n".join(out)
