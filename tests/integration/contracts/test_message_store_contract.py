"""MessageStore contract: intake, lookup, pagination and counts, identical on every backend."""

from __future__ import annotations

import pytest

from core.model import (
    Attachment,
    AttemptOutcome,
    ContentType,
    Deferred,
    Failed,
    MessageStatus,
    Priority,
    QueueCounts,
    Sent,
)
from ports.message_store import InvalidCursor

T0 = 1_800_000_000.0


async def _all_pages(storage, limit: int, **filters) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await storage.messages.page(filters.get("status"), filters.get("account_id"), limit, cursor)
        pages.append([r.id for r in page.records])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 100, "pagination does not terminate"


async def test_enqueue_stores_a_new_message_as_queued(storage, make_message) -> None:
    message = make_message(
        "m1",
        subject="Hello",
        body="hi",
        html_body="<p>hi</p>",
        cc=("cc@example.org",),
        bcc=("bcc@example.org",),
        reply_to="reply@example.com",
        return_path="bounces@example.com",
        headers=(("X-Campaign", "42"),),
        message_id="<m1@example.com>",
        attachments=(Attachment("a.txt", "aGVsbG8=", "text/plain"),),
        priority=Priority.HIGH,
    )
    assert await storage.messages.enqueue([message], T0) == []
    record = await storage.messages.get("m1")
    assert record is not None
    assert record.message == message
    assert record.status is MessageStatus.QUEUED
    assert record.created_ts == T0
    assert (record.sent_ts, record.error_ts, record.error, record.reported_ts) == (None, None, None, None)
    assert (record.attempts, record.first_attempt_ts, record.refused_recipients) == (0, None, ())
    assert record.deferred_ts is None


async def test_enqueue_round_trips_an_html_message(storage, make_message) -> None:
    message = make_message("m1", body="<p>Grüße ✓</p>", content_type=ContentType.HTML, subject="Grüße")
    await storage.messages.enqueue([message], T0)
    record = await storage.messages.get("m1")
    assert record is not None
    assert record.message == message


async def test_enqueue_keeps_a_deferred_ts(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1", deferred_ts=T0 + 600)], T0)
    record = await storage.messages.get("m1")
    assert record is not None
    assert record.deferred_ts == T0 + 600
    assert record.message.deferred_ts == T0 + 600


async def test_enqueue_returns_already_stored_ids_and_never_replaces_them(storage, make_message) -> None:
    original = make_message("dup", subject="first")
    assert await storage.messages.enqueue([original], T0) == []
    again = [make_message("new1"), make_message("dup", "other", subject="second"), make_message("new2")]
    assert await storage.messages.enqueue(again, T0 + 10) == ["dup"]
    kept = await storage.messages.get("dup")
    assert kept is not None
    assert kept.message == original
    assert kept.created_ts == T0
    assert await storage.messages.get("new1") is not None
    assert await storage.messages.get("new2") is not None


async def test_enqueue_does_not_reset_a_finished_message(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.claim_due("acc", T0, 10, T0 + 60)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 1)])
    assert await storage.messages.enqueue([make_message("m1")], T0 + 2) == ["m1"]
    record = await storage.messages.get("m1")
    assert record is not None
    assert record.status is MessageStatus.SENT


async def test_get_unknown_returns_none(storage) -> None:
    assert await storage.messages.get("nope") is None
    assert await storage.messages.attempts("nope") == []


async def test_attempts_are_listed_oldest_first(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 60, reason="421 busy", code=421)])
    await storage.queue.record_outcomes(
        [
            Deferred(
                "m1", "acc", T0 + 60, until=T0 + 120, reason="rate limited",
                outcome=AttemptOutcome.RATE_LIMITED, counts_as_attempt=False,
            )
        ]
    )  # fmt: skip
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 120, code=250, detail="queued as X")])
    attempts = await storage.messages.attempts("m1")
    assert [(a.message_id, a.ts, a.outcome, a.code, a.detail) for a in attempts] == [
        ("m1", T0 + 1, AttemptOutcome.TEMPORARY_FAILURE, 421, "421 busy"),
        ("m1", T0 + 60, AttemptOutcome.RATE_LIMITED, None, "rate limited"),
        ("m1", T0 + 120, AttemptOutcome.SENT, 250, "queued as X"),
    ]


async def test_attempts_of_one_message_only(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1"), make_message("m2")], T0)
    await storage.queue.record_outcomes([Failed("m2", "acc", T0 + 1, error="550 no such user", code=550)])
    assert await storage.messages.attempts("m1") == []
    [attempt] = await storage.messages.attempts("m2")
    assert (attempt.outcome, attempt.code, attempt.detail) == (
        AttemptOutcome.PERMANENT_FAILURE,
        550,
        "550 no such user",
    )


async def test_page_lists_in_insertion_order_not_by_id_or_priority(storage, make_message) -> None:
    ids = ["z", "a", "m", "b"]
    for i, mid in enumerate(ids):
        await storage.messages.enqueue([make_message(mid, priority=Priority(i % 4))], T0 + i)
    page = await storage.messages.page(None, None, 10, None)
    assert [r.id for r in page.records] == ids
    assert page.next_cursor is None


async def test_page_filters_by_status_and_account(storage, make_message) -> None:
    await storage.messages.enqueue(
        [
            make_message("a1", "A"),
            make_message("b1", "B"),
            make_message("a2", "A"),
            make_message("a3", "A"),
            make_message("b2", "B"),
        ],
        T0,
    )
    await storage.queue.record_outcomes([Sent("a2", "A", T0 + 1), Failed("b2", "B", T0 + 1, error="boom")])

    async def ids(status, account_id) -> list[str]:
        return [r.id for r in (await storage.messages.page(status, account_id, 10, None)).records]

    assert await ids(None, "A") == ["a1", "a2", "a3"]
    assert await ids(MessageStatus.QUEUED, None) == ["a1", "b1", "a3"]
    assert await ids(MessageStatus.SENT, None) == ["a2"]
    assert await ids(MessageStatus.ERROR, None) == ["b2"]
    assert await ids(MessageStatus.QUEUED, "A") == ["a1", "a3"]
    assert await ids(MessageStatus.ERROR, "A") == []
    assert await ids(None, "nobody") == []


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 10])
async def test_cursor_pagination_covers_every_row_exactly_once(storage, make_message, limit) -> None:
    ids = [f"m{i:02d}" for i in range(10)]
    await storage.messages.enqueue([make_message(mid) for mid in ids], T0)
    pages = await _all_pages(storage, limit)
    assert [mid for page in pages for mid in page] == ids
    assert all(len(page) == limit for page in pages[:-1])
    assert 0 < len(pages[-1]) <= limit


async def test_cursor_pagination_with_filters(storage, make_message) -> None:
    await storage.messages.enqueue([make_message(f"m{i}", "A" if i % 3 else "B") for i in range(12)], T0)
    pages = await _all_pages(storage, 2, account_id="A")
    assert [mid for page in pages for mid in page] == [f"m{i}" for i in range(12) if i % 3]


async def test_next_cursor_is_none_on_the_last_page(storage, make_message) -> None:
    await storage.messages.enqueue([make_message(f"m{i}") for i in range(4)], T0)
    first = await storage.messages.page(None, None, 2, None)
    assert first.next_cursor is not None
    last = await storage.messages.page(None, None, 2, first.next_cursor)
    assert [r.id for r in last.records] == ["m2", "m3"]
    assert last.next_cursor is None


async def test_empty_store_gives_an_empty_last_page(storage) -> None:
    page = await storage.messages.page(None, None, 10, None)
    assert page.records == ()
    assert page.next_cursor is None


async def test_cursor_stays_valid_when_rows_are_added_after_it(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1"), make_message("m2"), make_message("m3")], T0)
    first = await storage.messages.page(None, None, 2, None)
    await storage.messages.enqueue([make_message("m4")], T0 + 1)
    second = await storage.messages.page(None, None, 2, first.next_cursor)
    assert [r.id for r in second.records] == ["m3", "m4"]
    assert second.next_cursor is None


@pytest.mark.parametrize(
    "cursor", ["garbage", "-1", "1.5", " 3", "9" * 40, "0x10", "²", "١٢"], ids=lambda c: repr(c)[:12]
)
async def test_garbage_cursor_raises_invalid_cursor(storage, make_message, cursor) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    with pytest.raises(InvalidCursor):
        await storage.messages.page(None, None, 10, cursor)


async def test_invalid_cursor_is_a_value_error(storage) -> None:
    with pytest.raises(ValueError):
        await storage.messages.page(None, None, 10, "not-a-cursor")


async def test_counts_of_an_empty_store(storage) -> None:
    assert await storage.messages.counts(T0) == QueueCounts(0, 0, 0, 0, 0)


async def test_counts(storage, make_message) -> None:
    await storage.messages.enqueue(
        [
            make_message("q1"),
            make_message("q2"),
            make_message("later", deferred_ts=T0 + 600),
            make_message("past", deferred_ts=T0 - 600),
            make_message("retry"),
            make_message("s1"),
            make_message("s2"),
            make_message("e1"),
        ],
        T0,
    )
    await storage.queue.record_outcomes(
        [
            Deferred("retry", "acc", T0 + 1, until=T0 + 300, reason="451 later"),
            Sent("s1", "acc", T0 + 1),
            Sent("s2", "acc", T0 + 1),
            Failed("e1", "acc", T0 + 1, error="550 nope"),
        ]
    )
    assert await storage.messages.counts(T0 + 2) == QueueCounts(queued=5, deferred=2, sent=2, error=1, unreported=4)
    # deferral is relative to `now`
    assert (await storage.messages.counts(T0 + 300)).deferred == 1
    assert (await storage.messages.counts(T0 + 600)).deferred == 0


async def test_counts_unreported_drops_once_acknowledged(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("s1"), make_message("s2")], T0)
    await storage.queue.record_outcomes([Sent("s1", "acc", T0 + 1), Sent("s2", "acc", T0 + 1)])
    pending = await storage.reports.pending_reports(1)
    await storage.reports.mark_reported(pending, T0 + 2)
    assert (await storage.messages.counts(T0 + 2)).unreported == 1
