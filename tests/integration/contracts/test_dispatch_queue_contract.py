"""DispatchQueue contract: claiming with leases, recording outcomes, send history, wake-up times."""

from __future__ import annotations

from core.model import AttemptOutcome, Deferred, Failed, MessageStatus, Priority, Sent

T0 = 1_800_000_000.0
LEASE = T0 + 300


async def _claimed_ids(storage, now: float = T0, limit: int = 100, account_id: str = "acc") -> list[str]:
    return [c.message.id for c in await storage.queue.claim_due(account_id, now, limit, now + 300)]


async def _record(storage, message_id: str):
    record = await storage.messages.get(message_id)
    assert record is not None
    return record


async def test_claim_due_returns_the_stored_message(storage, make_message) -> None:
    message = make_message("m1", subject="hi", cc=("cc@example.org",), priority=Priority.LOW)
    await storage.messages.enqueue([message], T0)
    [claim] = await storage.queue.claim_due("acc", T0, 10, LEASE)
    assert claim.message == message
    assert (claim.attempts, claim.first_attempt_ts) == (0, None)


async def test_claim_due_orders_by_priority_then_due_time(storage, make_message) -> None:
    await storage.messages.enqueue(
        [
            make_message("low", priority=Priority.LOW),
            make_message("med-late", priority=Priority.MEDIUM, deferred_ts=T0 - 10),
            make_message("med-early", priority=Priority.MEDIUM, deferred_ts=T0 - 20),
            make_message("med-now", priority=Priority.MEDIUM),
            make_message("high", priority=Priority.HIGH),
            make_message("now", priority=Priority.IMMEDIATE),
        ],
        T0 - 30,
    )
    # med-now was enqueued at T0 - 30 with no deferral, so it has been due the longest
    assert await _claimed_ids(storage) == ["now", "high", "med-now", "med-early", "med-late", "low"]


async def test_claim_due_keeps_insertion_order_among_equals(storage, make_message) -> None:
    ids = ["c", "a", "b", "e", "d"]
    await storage.messages.enqueue([make_message(mid) for mid in ids], T0)
    assert await _claimed_ids(storage) == ids


async def test_claim_due_respects_limit_and_hands_out_the_rest_next(storage, make_message) -> None:
    await storage.messages.enqueue(
        [make_message(f"m{i}", priority=Priority.LOW if i < 3 else Priority.HIGH) for i in range(6)], T0
    )
    assert await _claimed_ids(storage, limit=4) == ["m3", "m4", "m5", "m0"]
    assert await _claimed_ids(storage, limit=4) == ["m1", "m2"]
    assert await _claimed_ids(storage, limit=4) == []


async def test_claim_due_only_for_the_account(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("a1", "A"), make_message("b1", "B"), make_message("a2", "A")], T0)
    assert await _claimed_ids(storage, account_id="A") == ["a1", "a2"]
    assert await _claimed_ids(storage, account_id="B") == ["b1"]
    assert await _claimed_ids(storage, account_id="C") == []


async def test_claim_due_waits_for_deferred_ts(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("later", deferred_ts=T0 + 600)], T0)
    assert await _claimed_ids(storage, now=T0) == []
    assert await _claimed_ids(storage, now=T0 + 599.9) == []
    assert await _claimed_ids(storage, now=T0 + 600) == ["later"]


async def test_claim_due_skips_finished_messages(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("sent"), make_message("failed"), make_message("open")], T0)
    await storage.queue.record_outcomes([Sent("sent", "acc", T0), Failed("failed", "acc", T0, error="550")])
    assert await _claimed_ids(storage, now=T0 + 1000) == ["open"]


async def test_a_claim_is_a_lease(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    assert [c.message.id for c in await storage.queue.claim_due("acc", T0, 10, T0 + 60)] == ["m1"]
    assert await _claimed_ids(storage, now=T0) == []
    assert await _claimed_ids(storage, now=T0 + 59) == []
    # lease ran out without an outcome (the process died mid-send): due again
    assert [c.message.id for c in await storage.queue.claim_due("acc", T0 + 60, 10, T0 + 120)] == ["m1"]
    assert await _claimed_ids(storage, now=T0 + 119) == []


async def test_claim_carries_earlier_attempts(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.claim_due("acc", T0, 10, LEASE)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 100, reason="451")])
    [claim] = await storage.queue.claim_due("acc", T0 + 100, 10, T0 + 400)
    assert (claim.attempts, claim.first_attempt_ts) == (1, T0 + 1)


async def test_record_sent(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1", to=("a@example.org", "b@example.org"))], T0)
    await storage.queue.claim_due("acc", T0, 10, LEASE)
    await storage.queue.record_outcomes(
        [Sent("m1", "acc", T0 + 5, refused_recipients=("b@example.org",), code=250, detail="ok")]
    )
    record = await _record(storage, "m1")
    assert record.status is MessageStatus.SENT
    assert record.sent_ts == T0 + 5
    assert (record.error_ts, record.error) == (None, None)
    assert record.refused_recipients == ("b@example.org",)
    assert (record.attempts, record.first_attempt_ts) == (1, T0 + 5)
    assert [(a.outcome, a.ts, a.code) for a in await storage.messages.attempts("m1")] == [
        (AttemptOutcome.SENT, T0 + 5, 250)
    ]


async def test_record_failed(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.claim_due("acc", T0, 10, LEASE)
    await storage.queue.record_outcomes([Failed("m1", "acc", T0 + 5, error="550 no such user", code=550)])
    record = await _record(storage, "m1")
    assert record.status is MessageStatus.ERROR
    assert (record.error_ts, record.error, record.sent_ts) == (T0 + 5, "550 no such user", None)
    assert (record.attempts, record.first_attempt_ts) == (1, T0 + 5)
    assert await _claimed_ids(storage, now=T0 + 1000) == []


async def test_record_failed_keeps_its_attempt_outcome(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes(
        [Failed("m1", "acc", T0, error="gave up after 5 tries", outcome=AttemptOutcome.TEMPORARY_FAILURE)]
    )
    [attempt] = await storage.messages.attempts("m1")
    assert (attempt.outcome, attempt.detail) == (AttemptOutcome.TEMPORARY_FAILURE, "gave up after 5 tries")


async def test_record_deferred(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.claim_due("acc", T0, 10, LEASE)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 5, until=T0 + 600, reason="451 later", code=451)])
    record = await _record(storage, "m1")
    assert record.status is MessageStatus.QUEUED
    assert record.deferred_ts == T0 + 600
    assert record.error == "451 later"
    assert (record.attempts, record.first_attempt_ts) == (1, T0 + 5)
    # the lease is released and replaced by the deferral, earlier or later than the lease
    assert await _claimed_ids(storage, now=T0 + 599) == []
    assert await _claimed_ids(storage, now=T0 + 600) == ["m1"]


async def test_deferral_shorter_than_the_lease_releases_it(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.claim_due("acc", T0, 10, T0 + 3600)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 10, reason="rate limited")])
    assert await _claimed_ids(storage, now=T0 + 10) == ["m1"]


async def test_attempts_count_and_first_attempt_ts(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes(
        [Deferred("m1", "acc", T0 + 1, until=T0 + 10, reason="rate", counts_as_attempt=False)]
    )
    record = await _record(storage, "m1")
    assert (record.attempts, record.first_attempt_ts) == (0, None)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 10, until=T0 + 20, reason="451")])
    await storage.queue.record_outcomes(
        [Deferred("m1", "acc", T0 + 20, until=T0 + 30, reason="rate", counts_as_attempt=False)]
    )
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 30, until=T0 + 40, reason="421")])
    record = await _record(storage, "m1")
    assert (record.attempts, record.first_attempt_ts) == (2, T0 + 10)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 40)])
    record = await _record(storage, "m1")
    assert (record.attempts, record.first_attempt_ts) == (3, T0 + 10)
    # every outcome is in the attempt log, counted or not
    assert len(await storage.messages.attempts("m1")) == 5


async def test_several_outcomes_in_one_call(storage, make_message) -> None:
    await storage.messages.enqueue([make_message(f"m{i}") for i in range(3)], T0)
    await storage.queue.claim_due("acc", T0, 10, LEASE)
    await storage.queue.record_outcomes(
        [
            Sent("m0", "acc", T0 + 1),
            Failed("m1", "acc", T0 + 1, error="550"),
            Deferred("m2", "acc", T0 + 1, until=T0 + 50, reason="451"),
        ]
    )
    statuses = [(await _record(storage, f"m{i}")).status for i in range(3)]
    assert statuses == [MessageStatus.SENT, MessageStatus.ERROR, MessageStatus.QUEUED]
    assert await storage.queue.record_outcomes([]) is None


async def test_send_history_records_successful_sends(storage, make_message) -> None:
    await storage.messages.enqueue(
        [make_message("a1", "A"), make_message("a2", "A"), make_message("a3", "A"), make_message("b1", "B")], T0
    )
    await storage.queue.record_outcomes(
        [
            Sent("a1", "A", T0 + 10),
            Sent("a2", "A", T0 + 20),
            Failed("a3", "A", T0 + 25, error="550"),
            Sent("b1", "B", T0 + 30),
        ]
    )
    assert sorted(await storage.queue.send_history("A", T0)) == [T0 + 10, T0 + 20]
    assert sorted(await storage.queue.send_history("A", T0 + 10)) == [T0 + 20]  # strictly after `since`
    assert await storage.queue.send_history("B", T0) == [T0 + 30]
    assert await storage.queue.send_history("C", T0) == []


async def test_deferrals_are_not_in_send_history(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 50, reason="451")])
    assert await storage.queue.send_history("acc", T0 - 1) == []


async def test_outcomes_for_a_finished_message_are_ignored(storage, make_message) -> None:
    """A late outcome changes nothing and logs no attempt; a late Sent still counts for rate limits."""
    await storage.messages.enqueue([make_message("sent"), make_message("failed")], T0)
    await storage.queue.record_outcomes([Sent("sent", "acc", T0 + 1), Failed("failed", "acc", T0 + 1, error="550")])
    before = {mid: await _record(storage, mid) for mid in ("sent", "failed")}
    await storage.queue.record_outcomes(
        [
            Sent("sent", "acc", T0 + 2),
            Deferred("sent", "acc", T0 + 2, until=T0 + 50, reason="late"),
            Sent("failed", "acc", T0 + 2),
            Failed("sent", "acc", T0 + 2, error="late"),
        ]
    )
    assert {mid: await _record(storage, mid) for mid in ("sent", "failed")} == before
    assert len(await storage.messages.attempts("sent")) == 1
    assert len(await storage.messages.attempts("failed")) == 1
    assert await storage.queue.send_history("acc", T0) == [T0 + 1, T0 + 2, T0 + 2]


async def test_outcomes_for_a_finished_message_leave_its_state_alone(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1")], T0)
    await storage.queue.record_outcomes([Sent("m1", "acc", T0 + 1)])
    await storage.queue.record_outcomes([Failed("m1", "acc", T0 + 2, error="late")])
    record = await _record(storage, "m1")
    assert (record.status, record.sent_ts, record.error_ts, record.error) == (MessageStatus.SENT, T0 + 1, None, None)
    assert record.attempts == 1
    assert (await storage.messages.counts(T0 + 3)).unreported == 1


async def test_outcomes_for_an_unknown_message_are_ignored(storage) -> None:
    await storage.queue.record_outcomes([Sent("ghost", "acc", T0), Failed("ghost2", "acc", T0, error="x")])
    assert await storage.messages.get("ghost") is None
    assert await storage.messages.attempts("ghost") == []
    assert await storage.messages.attempts("ghost2") == []
    assert await storage.queue.send_history("acc", T0 - 1) == [T0]  # the mail went out: it counts


async def test_next_due_at(storage, make_message) -> None:
    assert await storage.queue.next_due_at(T0) is None
    await storage.messages.enqueue([make_message("due")], T0)
    assert await storage.queue.next_due_at(T0) is None  # due now, not in the future
    await storage.messages.enqueue(
        [make_message("d1", deferred_ts=T0 + 600), make_message("d2", deferred_ts=T0 + 300)], T0
    )
    assert await storage.queue.next_due_at(T0) == T0 + 300
    assert await storage.queue.next_due_at(T0 + 300) == T0 + 600
    assert await storage.queue.next_due_at(T0 + 600) is None


async def test_next_due_at_includes_lease_expiry(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1"), make_message("later", deferred_ts=T0 + 600)], T0)
    await storage.queue.claim_due("acc", T0, 10, T0 + 60)
    assert await storage.queue.next_due_at(T0) == T0 + 60
    await storage.queue.record_outcomes([Deferred("m1", "acc", T0 + 1, until=T0 + 120, reason="451")])
    assert await storage.queue.next_due_at(T0 + 1) == T0 + 120


async def test_next_due_at_ignores_finished_messages(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1", deferred_ts=T0 + 600)], T0)
    await storage.queue.record_outcomes([Failed("m1", "acc", T0, error="account deleted")])
    assert await storage.queue.next_due_at(T0) is None


async def test_orphaned_lists_queued_messages_of_missing_accounts(storage, make_message, make_account) -> None:
    await storage.accounts.upsert(make_account("live"))
    await storage.messages.enqueue(
        [
            make_message("l1", "live"),
            make_message("n1", "never"),
            make_message("n2", "never", deferred_ts=T0 + 600),
            make_message("n3", "never"),
        ],
        T0,
    )
    await storage.queue.record_outcomes([Failed("n3", "never", T0 + 1, error="orphaned")])
    assert await storage.queue.orphaned(T0 + 1, 100) == [("n1", "never"), ("n2", "never")]
    # a forced delete fails the account's messages, so they are not orphans; a message that
    # slipped in after the delete (intake racing with it) is
    await storage.accounts.delete("live", force=True, now=T0 + 2)
    await storage.messages.enqueue([make_message("l2", "live")], T0 + 3)
    assert await storage.queue.orphaned(T0 + 3, 100) == [("n1", "never"), ("n2", "never"), ("l2", "live")]
    assert await storage.queue.orphaned(T0 + 3, 1) == [("n1", "never")]


async def test_an_orphan_being_sent_is_left_to_its_outcome_until_the_lease_ends(storage, make_message) -> None:
    await storage.messages.enqueue([make_message("m1", "gone")], T0)
    await storage.queue.claim_due("gone", T0, 10, T0 + 300)
    assert await storage.queue.orphaned(T0 + 10, 10) == []
    assert await storage.queue.orphaned(T0 + 300, 10) == [("m1", "gone")]
    await storage.queue.record_outcomes([Sent("m1", "gone", T0 + 20)])
    assert await storage.queue.orphaned(T0 + 300, 10) == []
