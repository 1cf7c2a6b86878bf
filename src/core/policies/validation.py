"""Semantic checks of a message at intake. Pure: no I/O, no clock.

Each check returns the reason a client sees, or None when the value is fine.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass

from core.model import ContentType, Message

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LOCAL_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_LOCAL_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"\Z')
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_IP_LITERAL = re.compile(r"\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]\Z")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}\Z")
_FORBIDDEN_CHARS = ("\r", "\n", "\x00")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")  # all but TAB
MAX_WORD = 900  # a header line must stay under 998 octets; longer words cannot be folded
MAX_FILENAME = 80
MAX_MIME_TYPE = 127  # RFC 6838

# Headers the service derives from the message's own fields; a client sets them through those fields.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "date",
        "message-id",
        "subject",
        "reply-to",
        "return-path",
        "sender",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    max_message_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 20
    max_headers: int = 50
    max_header_length: int = 998
    max_recipients: int = 500


def has_forbidden_chars(value: str) -> bool:
    return any(ch in value for ch in _FORBIDDEN_CHARS)


def address_problem(value: str) -> str | None:
    """Why `value` is not a usable address ('Name <local@domain>' or 'local@domain'), or None."""
    if has_forbidden_chars(value):
        return "contains CR, LF or NUL"
    if _CONTROL.search(value):
        return "contains a control character"
    text = value.strip()
    if text.endswith(">") and "<" in text:
        display, _, rest = text.rpartition("<")
        display = display.strip()
        quoted = len(display) >= 2 and display[0] == display[-1] == '"'
        if not quoted and any(ch in display for ch in '<>"'):
            return "malformed display name"
        text = rest[:-1].strip()
    return addr_spec_problem(text)


def addr_spec_problem(text: str) -> str | None:
    if not text:
        return "empty address"
    if len(text) > 254:
        return "address longer than 254 characters"
    local, sep, domain = text.rpartition("@")
    if not sep or not local:
        return "missing local part or @"
    if len(local.encode()) > 64:
        return "local part longer than 64 bytes"
    if not (_LOCAL_DOT_ATOM.match(local) or _LOCAL_QUOTED.match(local)):
        return "malformed local part"
    return _domain_problem(domain)


def _domain_problem(domain: str) -> str | None:
    if _IP_LITERAL.match(domain):
        return None
    if not domain or domain.endswith("."):
        return "malformed domain"
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "malformed domain"
    if not all(_LABEL.match(label) for label in ascii_domain.split(".")):
        return "malformed domain"
    return None


def message_problem(message: Message, limits: IntakeLimits) -> str | None:
    """The first reason the message cannot be accepted, or None."""
    for check in (_encoding_problem, _identity_problem, _address_fields_problem, _text_fields_problem, _wire_problem):
        reason = check(message)
        if reason:
            return reason
    return _size_problem(message, limits)


def _texts(message: Message) -> list[tuple[str, str]]:
    """(field, value) of every string in the message."""
    values = [
        ("id", message.id),
        ("account_id", message.account_id),
        ("from", message.from_addr),
        ("subject", message.subject),
        ("body", message.body),
        ("html_body", message.html_body or ""),
        ("reply_to", message.reply_to or ""),
        ("return_path", message.return_path or ""),
        ("message_id", message.message_id or ""),
    ]
    values += [(name, v) for name, vs in (("to", message.to), ("cc", message.cc), ("bcc", message.bcc)) for v in vs]
    values += [(f"header {n!r}", f"{n}{v}") for n, v in message.headers]
    values += [("attachment", f"{a.filename}{a.mime_type}{a.content_b64}") for a in message.attachments]
    return values


def _encoding_problem(message: Message) -> str | None:
    for field, value in _texts(message):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{field} is not valid text (it holds a lone UTF-16 surrogate)"
    return None


def _wire_problem(message: Message) -> str | None:
    """What would break the message on the wire although each character is allowed on its own."""
    header_texts = [("subject", message.subject)] + [(f"header {n!r}", v) for n, v in message.headers]
    header_texts += [("attachment filename", a.filename) for a in message.attachments]
    for field, value in header_texts:
        if _CONTROL.search(value):
            return f"{field} contains a control character"
        if any(len(word) > MAX_WORD for word in value.split()):
            return f"{field} has a word longer than {MAX_WORD} characters"
    if message.message_id is not None and not message.message_id.isascii():
        return "message_id must be ASCII"
    if any(not a.mime_type.isascii() or _CONTROL.search(a.mime_type) for a in message.attachments):
        return "attachment mime type must be ASCII"
    for attachment in message.attachments:
        # Encoded (percent-escaped UTF-8) on one header line, which must stay under 998 octets.
        if len(attachment.filename) > MAX_FILENAME or len(attachment.mime_type) > MAX_MIME_TYPE:
            return f"attachment filename longer than {MAX_FILENAME} or mime type longer than {MAX_MIME_TYPE}"
    return None


def _identity_problem(message: Message) -> str | None:
    if message.deferred_ts is not None and not (math.isfinite(message.deferred_ts) and message.deferred_ts >= 0):
        return "deferred_ts must be a finite, non-negative POSIX time"
    if not message.id.strip():
        return "missing id"
    if has_forbidden_chars(message.id) or len(message.id) > 255:
        return "id must be at most 255 characters without CR, LF or NUL"
    if not message.account_id.strip():
        return "missing account_id"
    return None


def _address_fields_problem(message: Message) -> str | None:
    if not message.from_addr.strip():
        return "missing from"
    fields: list[tuple[str, tuple[str, ...]]] = [
        ("from", (message.from_addr,)),
        ("to", message.to),
        ("cc", message.cc),
        ("bcc", message.bcc),
        ("reply_to", (message.reply_to,) if message.reply_to else ()),
    ]
    if not message.to:
        return "missing to: at least one recipient is required"
    for name, values in fields:
        for value in values:
            problem = address_problem(value)
            if problem:
                return f"malformed {name} address {value!r}: {problem}"
    if message.return_path:
        problem = addr_spec_problem(message.return_path.strip().strip("<>"))
        if problem:
            return f"malformed return_path address {message.return_path!r}: {problem}"
    return None


def _text_fields_problem(message: Message) -> str | None:
    if has_forbidden_chars(message.subject):
        return "subject contains CR, LF or NUL"
    if "\x00" in message.body or (message.html_body and "\x00" in message.html_body):
        return "body contains NUL"
    if message.html_body is not None and message.content_type is ContentType.HTML:
        return "html_body is the HTML alternative of a plain body: use content_type plain with it"
    if message.message_id is not None and (has_forbidden_chars(message.message_id) or " " in message.message_id):
        return "message_id contains whitespace, CR, LF or NUL"
    for name, value in message.headers:
        if not _HEADER_NAME.match(name):
            return f"malformed header name {name!r}"
        if name.lower() in RESERVED_HEADERS:
            return f"header {name!r} is set from the message fields, not from headers"
        if has_forbidden_chars(value):
            return f"header {name!r} contains CR, LF or NUL"
    for attachment in message.attachments:
        if has_forbidden_chars(attachment.filename) or not attachment.filename.strip():
            return "attachment filename is empty or contains CR, LF or NUL"
        if has_forbidden_chars(attachment.mime_type) or "/" not in attachment.mime_type:
            return f"attachment {attachment.filename!r} has a malformed mime type"
    return None


def _size_problem(message: Message, limits: IntakeLimits) -> str | None:
    if len(message.recipients) > limits.max_recipients:
        return f"too many recipients: {len(message.recipients)} > {limits.max_recipients}"
    if len(message.headers) > limits.max_headers:
        return f"too many headers: {len(message.headers)} > {limits.max_headers}"
    for name, value in message.headers:
        if len(name) + len(value) + 2 > limits.max_header_length:
            return f"header {name!r} longer than {limits.max_header_length} characters"
    if len(message.attachments) > limits.max_attachments:
        return f"too many attachments: {len(message.attachments)} > {limits.max_attachments}"
    texts = (message.body, message.subject, message.html_body or "")
    size = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    for attachment in message.attachments:
        try:
            size += len(base64.b64decode(attachment.content_b64, validate=True))
        except (binascii.Error, ValueError):
            return f"attachment {attachment.filename!r} is not valid base64"
    if size > limits.max_message_bytes:
        return f"body too large: {size} bytes > {limits.max_message_bytes}"
    return None
