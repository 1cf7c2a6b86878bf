"""ReportQueue contract: what is pending a report, acknowledging by version, purging finished rows."""

from __future__ import annotations

from core.model import Deferred, DeliveryReport, Failed, MessageStatus, Priority, Sent

T0 = 1_800_000_000.0


async def _pending(storage) -> dict[str, DeliveryReport]:
    return {r.id: r for r in await storage.reports.pending_reports(100)}


async def _ids(storage) -> list[str]:
    return [r.id for r in (await storage.messages.page(None, None, 100, None)).records]


async def test_nothing_pending_for_fresh_messages(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1"), make_message("m2", deferred_ts=T0 + 600)], T0)
    await storage.queue.claim_due("acc", T0, 10, T0 + 60)
    assert await storage.reports.pending_reports(100) == []


async def test_pending_reports_after_outcomes(storage, make_message) -> None:
    await storage.messages.enqueue(
        [
            make_message("sent", priority=Priority.HIGH),
            make_message("error", "other"),
            make_message("deferred", priority=Priority.LOW),
            make_message("untouched"),
        ],
        T0,
    )
    await storage.queue.record_outcomes(
        [
            Sent("sent", "acc", T0 + 1),
            Failed("error", "other", T0 + 2, error="550 no such user", code=550),
            Deferred("deferred", "acc", T0 + 3, until=T0 + 600, reason="451 later", code=451),
        ]
    )
    pending = await storage.reports.pending_reports(100)
    assert [r.id for r in pending] == ["sent", "error", "deferred"]  # insertion order
    sent, error, deferred = pending
    assert (sent.account_id, sent.priority, sent.sent_ts, sent.error_ts, sent.error, sent.deferred_ts) == (
        "acc", 1, T0 + 1, None, None, None,
    )  # fmt: skip
    assert (error.account_id, error.priority, error.sent_ts, error.error_ts, error.error, error.deferred_ts) == (
        "other", 2, None, T0 + 2, "550 no such user", None,
    )  # fmt: skip
    assert (deferred.priority, deferred.sent_ts, deferred.error_ts, deferred.error, deferred.deferred_ts) == (
        3, None, None, None, T0 + 600,
    )  # fmt: skip
    assert all(r.version > 0 for r in pending)


async def test_pending_reports_respects_limit(storage, make_message) -> None:
    await storage.messages.enqueue([make_message(f"m{i}") for i in range(5)], T0)
    await storage.queue.record_outcomes([Sent(f"m{i}", "acc", T0 + 1) for i in range(5)])
    assert [r.id for r in await storage.reports.pending_reports(2)] == ["m0", "m1"]


async def test_a_sent_report_after_a_deferral_has_no_deferred_ts(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 60, reason="451")])
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 60)])
    [report] = await storage.reports.pending_reports(100)
    assert (report.sent_ts, report.error_ts, report.error, report.deferred_ts) == (T0 + 60, None, None, None)


async def test_mark_reported_clears_pending_and_sets_reported_ts(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1"), make_message("m2")], T0)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 1), Failed("m2", "acc", T0 + 1, error="550")])
    pending = await storage.reports.pending_reports(100)
    assert await storage.reports.mark_reported(pending, T0 + 5) == 2
    assert await storage.reports.pending_reports(100) == []
    for mid in ("m1", "m2"):
        record = await storage.messages.get(mid)
        assert record is not None
        assert record.reported_ts == T0 + 5


async def test_mark_reported_only_matches_the_reported_version(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1"), make_message("m2")], T0)
    await storage.queue.record_outcomes(
        [
            Deferred("m1", "acc", T0 + 1, until=T0 + 60, reason="451"),
            Deferred("m2", "acc", T0 + 1, until=T0 + 60, reason="451"),
        ]
    )
    in_flight = await storage.reports.pending_reports(100)
    # while the batch is on its way, m1 changes state again
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 60)])
    assert await storage.reports.mark_reported(in_flight, T0 + 61) == 1
    [still] = await storage.reports.pending_reports(100)
    assert still.id == "m1"
    assert still.sent_ts == T0 + 60
    assert still.version > next(r.version for r in in_flight if r.id == "m1")
    m1 = await storage.messages.get("m1")
    assert m1 is not None
    assert m1.reported_ts is None


async def test_mark_reported_ignores_unknown_ids(storage) -> None:
    ghost = DeliveryReport("ghost", "acc", 2, T0, None, None, None, version=1)
    assert await storage.reports.mark_reported([ghost], T0) == 0
    assert await storage.reports.mark_reported([], T0) == 0


async def test_rows_reappear_when_their_state_changes_again(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 60, reason="451")])
    first = await storage.reports.pending_reports(100)
    await storage.reports.mark_reported(first, T0 + 2)
    assert await storage.reports.pending_reports(100) == []

    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 60, until=T0 + 180, reason="451")])
    [second] = await storage.reports.pending_reports(100)
    assert second.deferred_ts == T0 + 180
    assert second.version > first[0].version
    await storage.reports.mark_reported([second], T0 + 61)

    await storage.queue.record_outcomes([Failed("m1", "acc", T0 + 180, error="gave up")])
    [third] = await storage.reports.pending_reports(100)
    assert (third.error_ts, third.error, third.deferred_ts) == (T0 + 180, "gave up", None)
    assert third.version > second.version
    # an old acknowledgement does not hide the new state
    assert await storage.reports.mark_reported([second], T0 + 181) == 0
    assert [r.id for r in await storage.reports.pending_reports(100)] == ["m1"]


async def _finish(storage, make_message) -> None:
    """s-old sent at T0+10, e-old failed at T0+20, s-new sent at T0+100, q queued; s-old and e-old reported."""
    await storage.messages.enqueue(
        [make_message("s-old"), make_message("e-old"), make_message("s-new"), make_message("q")], T0
    )
    await storage.queue.record_outcomes([Sent("s-old", "acc", T0 + 10), Failed("e-old", "acc", T0 + 20, error="x")])
    await storage.queue.record_outcomes([Deferred("q", "acc", T0 + 20, until=T0 + 10_000, reason="451")])
    pending = [r for r in await storage.reports.pending_reports(100) if r.id in ("s-old", "e-old")]
    await storage.reports.mark_reported(pending, T0 + 30)
    await storage.queue.record_outcomes([Sent("s-new", "acc", T0 + 100)])


async def test_purge_finished_requiring_reports(storage, make_message) -> None:
    await _finish(storage, make_message)
    assert await storage.reports.purge_finished(T0 + 30, require_reported=True) == 0  # reported_ts == cutoff
    assert await storage.reports.purge_finished(T0 + 1000, require_reported=True) == 2
    assert await _ids(storage) == ["s-new", "q"]  # s-new is unreported, q is queued
    assert await storage.messages.get("s-old") is None
    assert await storage.messages.attempts("s-old") == []
    assert await storage.messages.attempts("e-old") == []
    assert len(await storage.messages.attempts("s-new")) == 1


async def test_purge_finished_requiring_reports_keeps_a_row_changed_after_its_report(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 5, reason="451")])
    await storage.reports.mark_reported(await storage.reports.pending_reports(100), T0 + 2)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 5)])
    assert await storage.reports.purge_finished(T0 + 1000, require_reported=True) == 0
    assert await _ids(storage) == ["m1"]


async def test_purge_finished_without_requiring_reports(storage, make_message) -> None:
    await _finish(storage, make_message)
    assert await storage.reports.purge_finished(T0 + 20, require_reported=False) == 1  # finished strictly before
    assert await _ids(storage) == ["e-old", "s-new", "q"]
    assert await storage.reports.purge_finished(T0 + 1000, require_reported=False) == 2
    assert await _ids(storage) == ["q"]
    record = await storage.messages.get("q")
    assert record is not None
    assert record.status is MessageStatus.QUEUED


async def test_purge_finished_never_touches_queued_messages(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("q1"), make_message("q2", deferred_ts=T0 - 1000)], T0 - 5000)
    assert await storage.reports.purge_finished(T0 + 10**9, require_reported=False) == 0
    assert await storage.reports.purge_finished(T0 + 10**9, require_reported=True) == 0
    assert await _ids(storage) == ["q1", "q2"]


async def test_purged_ids_can_be_enqueued_again(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 1)])
    await storage.reports.purge_finished(T0 + 2, require_reported=False)
    assert await storage.messages.enqueue([make_message("m1")], T0 + 3) == []
    record = await storage.messages.get("m1")
    assert record is not None
    assert (record.status, record.created_ts, record.attempts) == (MessageStatus.QUEUED, T0 + 3, 0)
    assert await storage.messages.attempts("m1") == []


async def test_purge_does_not_touch_send_history(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 1)])
    await storage.reports.purge_finished(T0 + 2, require_reported=False)
    assert await storage.queue.send_history("acc", T0) == [T0 + 1]


async def test_prune_send_history(storage, make_message) -> None:
    await storage.messages.enqueue([make_message(f"m{i}", "A" if i % 2 else "B") for i in range(4)], T0)
    await storage.queue.record_outcomes([Sent(f"m{i}", "A" if i % 2 else "B", T0 + 10 * i) for i in range(4)])
    assert await storage.reports.prune_send_history(T0 + 10) == 1  # strictly before
    assert await storage.queue.send_history("B", T0 - 1) == [T0 + 20]
    assert await storage.queue.send_history("A", T0 - 1) == [T0 + 10, T0 + 30]
    assert await storage.reports.prune_send_history(T0 + 10) == 0
    assert await storage.reports.prune_send_history(T0 + 1000) == 3
    assert await storage.queue.send_history("A", T0 - 1) == []
    # the messages themselves stay
    assert len(await _ids(storage)) == 4


async def test_a_report_names_the_refused_recipients(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1", to=("ok@example.org", "gone@example.org"))], T0)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 1, refused_recipients=("gone@example.org",))])
    [report] = await storage.reports.pending_reports(10)
    assert report.refused_recipients == ("gone@example.org",)
