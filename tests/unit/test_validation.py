"""Intake validation: addresses and whole messages, as tables."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from core.model import Attachment, ContentType, Message
from core.policies.validation import IntakeLimits, addr_spec_problem, address_problem, message_problem

LONG_DOMAIN = ".".join(["d" * 63] * 4)  # 255 characters of valid labels

VALID_ADDRESSES = [
    "user@example.com",
    "Jane Doe <jane@example.com>",
    '"Doe, Jane" <jane@example.com>',
    "  user@example.com  ",
    "user+tag@example.com",
    "first.last@sub.example.co.uk",
    '"john doe"@example.com',
    '"quoted\\"escape"@example.com',
    "user@bücher.de",
    "Müller <müller@bücher.de>",
    "user@[192.0.2.1]",
    "user@[IPv6:2001:db8::1]",
    "x@" + ".".join(["d" * 63, "d" * 63, "d" * 63, "d" * 60]),  # exactly 254 characters
]


@pytest.mark.parametrize("value", VALID_ADDRESSES)
def test_valid_addresses(value: str) -> None:
    assert address_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("user.example.com", "missing local part or @"),
        ("@example.com", "missing local part or @"),
        ("a@b@example.com", "malformed local part"),
        ("user@", "malformed domain"),
        ("user name@example.com", "malformed local part"),
        ("user@exam ple.com", "malformed domain"),
        ("Jane user@example.com", "malformed local part"),
        ("user@example.com.", "malformed domain"),
        ("user@-example.com", "malformed domain"),
        ("user@example-.com", "malformed domain"),
        ("user@exa..mple.com", "malformed domain"),
        (".user@example.com", "malformed local part"),
        ("user.@example.com", "malformed local part"),
        ("user@example.com\r\nBcc: victim@example.org", "contains CR, LF or NUL"),
        ("Jane <jane@example.com>\nBcc: x@example.org", "contains CR, LF or NUL"),
        ("user\x00@example.com", "contains CR, LF or NUL"),
        ("Jane <x> <jane@example.com>", "malformed display name"),
        ("Jane <>", "empty address"),
        ("", "empty address"),
        ("x@" + LONG_DOMAIN, "address longer than 254 characters"),
        ("l" * 65 + "@example.com", "local part longer than 64 bytes"),
    ],
)
def test_invalid_addresses(value: str, problem: str) -> None:
    assert address_problem(value) == problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("user@example.com", None),
        ("user@bücher.de", None),
        ("user@[192.0.2.1]", None),
        ("Jane <jane@example.com>", "malformed local part"),  # display names are not addr-specs
        ("", "empty address"),
        ("user@example.com.", "malformed domain"),
    ],
)
def test_addr_spec_problem(value: str, problem: str | None) -> None:
    assert addr_spec_problem(value) == problem


GOOD = Message(
    id="m1",
    account_id="acc",
    from_addr="Sender <sender@example.com>",
    to=("rcpt@example.com",),
    cc=("cc@example.com",),
    subject="Hello",
    body="Hi there",
    headers=(("X-Campaign", "spring"),),
    attachments=(Attachment("a.txt", base64.b64encode(b"hello").decode(), "text/plain"),),
)


def with_(**changes: Any) -> Message:
    return dataclasses.replace(GOOD, **changes)


def test_good_message_has_no_problem() -> None:
    assert message_problem(GOOD, IntakeLimits()) is None


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (with_(id=""), "missing id"),
        (with_(id="   "), "missing id"),
        (with_(id="a\nb"), "id must be at most 255 characters without CR, LF or NUL"),
        (with_(id="x" * 256), "id must be at most 255 characters without CR, LF or NUL"),
        (with_(account_id=""), "missing account_id"),
        (with_(from_addr=""), "missing from"),
        (with_(to=()), "missing to: at least one recipient is required"),
        (with_(to=("nobody",)), "malformed to address 'nobody': missing local part or @"),
        (with_(cc=("bad@@example.com",)), "malformed cc address 'bad@@example.com': malformed local part"),
        (with_(bcc=("x@example.com.",)), "malformed bcc address 'x@example.com.': malformed domain"),
        (with_(reply_to="nope"), "malformed reply_to address 'nope': missing local part or @"),
        (with_(subject="Hi\r\nBcc: victim@example.org"), "subject contains CR, LF or NUL"),
        (with_(subject="Hi\nthere"), "subject contains CR, LF or NUL"),
        (with_(body="a\x00b"), "body contains NUL"),
        (with_(html_body="<p>a\x00b</p>"), "body contains NUL"),
        (
            with_(html_body="<p>hi</p>", content_type=ContentType.HTML),
            "html_body is the HTML alternative of a plain body: use content_type plain with it",
        ),
        (
            with_(headers=(("Bcc", "victim@example.org"),)),
            "header 'Bcc' is set from the message fields, not from headers",
        ),
        (
            with_(headers=(("From", "ceo@example.com"),)),
            "header 'From' is set from the message fields, not from headers",
        ),
        (
            with_(headers=(("content-type", "text/html"),)),
            "header 'content-type' is set from the message fields, not from headers",
        ),
        (with_(headers=(("X-Tag", "a\r\nBcc: victim@example.org"),)), "header 'X-Tag' contains CR, LF or NUL"),
        (with_(headers=(("X Tag", "a"),)), "malformed header name 'X Tag'"),
        (with_(headers=(("X-Tag:", "a"),)), "malformed header name 'X-Tag:'"),
        (
            with_(attachments=(Attachment("a.bin", "not base64!!"),)),
            "attachment 'a.bin' is not valid base64",
        ),
        (
            with_(attachments=(Attachment("a\n.bin", "aGVsbG8="),)),
            "attachment filename is empty or contains CR, LF or NUL",
        ),
        (
            with_(attachments=(Attachment("a.bin", "aGVsbG8=", "binary"),)),
            "attachment 'a.bin' has a malformed mime type",
        ),
    ],
)
def test_message_rejections(message: Message, problem: str) -> None:
    assert message_problem(message, IntakeLimits()) == problem


@pytest.mark.parametrize(
    ("message", "limits", "problem"),
    [
        (
            with_(headers=(("X-A", "1"), ("X-B", "2"), ("X-C", "3"))),
            IntakeLimits(max_headers=2),
            "too many headers: 3 > 2",
        ),
        (with_(headers=(("X-A", "1"), ("X-B", "2"))), IntakeLimits(max_headers=2), None),
        (
            with_(headers=(("X-A", "v" * 20),)),
            IntakeLimits(max_header_length=20),
            "header 'X-A' longer than 20 characters",
        ),
        (with_(to=("a@example.com", "b@example.com")), IntakeLimits(max_recipients=2), "too many recipients: 3 > 2"),
        (
            with_(attachments=GOOD.attachments * 3),
            IntakeLimits(max_attachments=2),
            "too many attachments: 3 > 2",
        ),
        # body (8) + subject (5) + decoded attachment (5) = 18 bytes
        (GOOD, IntakeLimits(max_message_bytes=17), "body too large: 18 bytes > 17"),
        (GOOD, IntakeLimits(max_message_bytes=18), None),
        (with_(body="é" * 10, attachments=()), IntakeLimits(max_message_bytes=24), "body too large: 25 bytes > 24"),
        (with_(html_body="<p>hi</p>"), IntakeLimits(max_message_bytes=26), "body too large: 27 bytes > 26"),
    ],
)
def test_message_size_limits(message: Message, limits: IntakeLimits, problem: str | None) -> None:
    assert message_problem(message, limits) == problem


@pytest.mark.parametrize("message", [with_(html_body="<p>Hi there</p>"), with_(id="x" * 255), with_(cc=(), bcc=())])
def test_acceptable_variants(message: Message) -> None:
    assert message_problem(message, IntakeLimits()) is None


def test_first_problem_wins() -> None:
    message = with_(id="", to=(), subject="a\nb")
    assert message_problem(message, IntakeLimits()) == "missing id"


def test_quoted_display_name_may_hold_angle_brackets() -> None:
    assert address_problem('"Smith <Sales>" <sales@example.com>') is None
    assert address_problem("Smith <Sales> <sales@example.com>") == "malformed display name"
