"""DispatchService over the in-memory adapters and a frozen clock."""

from __future__ import annotations

import asyncio

from unit_support import World

from core.model import (
    Account,
    AttemptOutcome,
    Deferred,
    Failed,
    Held,
    LimitBehavior,
    Message,
    MessageStatus,
    Priority,
    RateLimits,
    Sent,
)
from core.policies.retry import RetryPolicy
from core.services.dispatch import DispatchConfig, DispatchService
from ports.mail_sender import MailSender, PermanentSendError, SendReceipt, TransientSendError


class PoisonSender(MailSender):
    """Sends everything except one message id, for which it fails in an unexpected way."""

    def __init__(self, poison_id: str) -> None:
        self.poison_id = poison_id
        self.sent: list[str] = []

    async def send(self, account: Account, message: Message) -> SendReceipt:
        if message.id == self.poison_id:
            raise RuntimeError("boom")
        self.sent.append(message.id)
        return SendReceipt(250, "OK")

    async def close(self) -> None:
        pass


class SlowSender(MailSender):
    """Yields to the event loop mid-send so concurrent sends overlap; records the peak overlap."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.sent: list[str] = []

    async def send(self, account: Account, message: Message) -> SendReceipt:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        self.sent.append(message.id)
        return SendReceipt()

    async def close(self) -> None:
        pass


async def test_sends_due_messages_and_records_them(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1", to=("a@example.com",), cc=("b@example.com",)))

    summary = await world.dispatcher().tick()

    assert summary.outcomes == (Sent("m1", "acc", world.t0, (), 250, "OK (recorded, not sent)"),)
    assert summary.more_work is False
    assert summary.next_due_at is None
    [mail] = world.sender.sent
    assert mail.recipients == ("a@example.com", "b@example.com")
    assert mail.envelope_from == "sender@example.com"
    record = await world.record("m1")
    assert record.status is MessageStatus.SENT
    assert record.sent_ts == world.t0
    assert record.attempts == 1
    assert world.state.send_log == [("acc", world.t0)]


async def test_priority_order_within_a_tick(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(
        world.message("low", priority=Priority.LOW),
        world.message("medium", priority=Priority.MEDIUM),
        world.message("immediate", priority=Priority.IMMEDIATE),
        world.message("high", priority=Priority.HIGH),
        world.message("immediate-2", priority=Priority.IMMEDIATE),
    )

    await world.dispatcher().tick()

    assert world.sent_ids() == ["immediate", "immediate-2", "high", "medium", "low"]


async def test_immediate_jumps_ahead_of_older_low_when_batches_are_small(world: World) -> None:
    await world.add_account("acc", batch_size=1)
    await world.enqueue(world.message("low-1", priority=Priority.LOW), world.message("low-2", priority=Priority.LOW))
    world.clock.advance(5)
    await world.enqueue(world.message("urgent", priority=Priority.IMMEDIATE))

    await world.dispatcher().tick()

    assert world.sent_ids() == ["urgent"]


async def test_batch_size_per_account_and_more_work(world: World) -> None:
    await world.add_account("small", batch_size=2)
    await world.add_account("default")
    await world.enqueue(*(world.message(f"s{i}", "small") for i in range(5)))
    await world.enqueue(*(world.message(f"d{i}", "default") for i in range(5)))
    dispatcher = world.dispatcher(DispatchConfig(batch_size_per_account=3))

    first = await dispatcher.tick()

    assert sorted(o.message_id for o in first.outcomes) == ["d0", "d1", "d2", "s0", "s1"]
    assert first.more_work is True
    assert first.next_due_at is None

    second = await dispatcher.tick()
    assert sorted(o.message_id for o in second.outcomes) == ["d3", "d4", "s2", "s3"]
    assert second.more_work is True  # "small" took a full batch of 2

    third = await dispatcher.tick()
    assert [o.message_id for o in third.outcomes] == ["s4"]
    assert third.more_work is False
    assert len(world.sender.sent) == 10


async def test_deferred_message_waits_for_the_clock(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("later", deferred_ts=world.t0 + 100), world.message("now"))
    dispatcher = world.dispatcher()

    first = await dispatcher.tick()
    assert world.sent_ids() == ["now"]
    assert first.next_due_at == world.t0 + 100

    world.clock.advance(99.9)
    assert (await dispatcher.tick()).outcomes == ()

    world.clock.advance(0.1)
    await dispatcher.tick()
    assert world.sent_ids() == ["now", "later"]
    assert (await world.record("later")).sent_ts == world.t0 + 100


async def test_suspended_service_sends_nothing(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    await world.service_state.set_active(False)
    dispatcher = world.dispatcher()

    summary = await dispatcher.tick()

    assert summary.suspended is True
    assert summary.outcomes == ()
    assert world.sender.sent == []
    assert (await world.record("m1")).status is MessageStatus.QUEUED

    await world.service_state.set_active(True)
    assert (await dispatcher.tick()).suspended is False
    assert world.sent_ids() == ["m1"]


async def test_rate_limit_holds_each_message_until_its_own_slot(world: World) -> None:
    await world.add_account("acc", limits=RateLimits(per_minute=2))
    await world.enqueue(*(world.message(f"m{i}") for i in range(5)))
    dispatcher = world.dispatcher()
    t0 = world.t0

    first = await dispatcher.tick()

    assert world.sent_ids() == ["m0", "m1"]
    held = [o for o in first.outcomes if isinstance(o, Held)]
    assert [(o.message_id, o.until) for o in held] == [("m2", t0 + 60), ("m3", t0 + 60), ("m4", t0 + 120)]
    assert first.more_work is False  # the next tick comes when a slot frees
    assert first.next_due_at == t0 + 60
    record = await world.record("m2")
    assert (record.status, record.deferred_ts, record.attempts) == (MessageStatus.QUEUED, None, 0)
    assert await world.messages.attempts("m2") == []  # holding back is no attempt
    assert await world.reports.pending_reports(10) == [] or all(
        r.id in ("m0", "m1") for r in await world.reports.pending_reports(10)
    )  # and no report

    world.clock.advance(59)
    assert (await dispatcher.tick()).outcomes == ()
    assert len(world.sender.sent) == 2

    world.clock.advance(1)
    await dispatcher.tick()
    assert world.sent_ids() == ["m0", "m1", "m2", "m3"]

    world.clock.advance(60)
    await dispatcher.tick()
    assert world.sent_ids() == ["m0", "m1", "m2", "m3", "m4"]
    assert (await world.record("m4")).sent_ts == t0 + 120


async def test_rate_limit_reject_fails_the_excess(world: World) -> None:
    await world.add_account("acc", limits=RateLimits(per_minute=2), limit_behavior=LimitBehavior.REJECT)
    await world.enqueue(*(world.message(f"m{i}") for i in range(3)))

    summary = await world.dispatcher().tick()

    assert world.sent_ids() == ["m0", "m1"]
    failed = [o for o in summary.outcomes if isinstance(o, Failed)]
    assert failed == [
        Failed("m2", "acc", world.t0, "rate limit exceeded for account acc", outcome=AttemptOutcome.RATE_LIMITED)
    ]
    record = await world.record("m2")
    assert record.status is MessageStatus.ERROR
    assert record.error == "rate limit exceeded for account acc"
    assert [a.outcome for a in await world.messages.attempts("m2")] == [AttemptOutcome.RATE_LIMITED]


async def test_transient_errors_retry_then_give_up(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    policy = RetryPolicy(base_seconds=10, factor=2, max_delay_seconds=1000, max_attempts=3, jitter=0.0)
    dispatcher = world.dispatcher(DispatchConfig(retry=policy))
    busy = TransientSendError("mailbox busy", 451)
    world.sender.fail_next(busy, busy, busy)
    t0 = world.t0

    first = await dispatcher.tick()
    assert first.outcomes == (Deferred("m1", "acc", t0, t0 + 10, "451 mailbox busy", 451),)
    record = await world.record("m1")
    assert (record.status, record.attempts, record.first_attempt_ts, record.deferred_ts) == (
        MessageStatus.QUEUED,
        1,
        t0,
        t0 + 10,
    )
    assert record.error == "451 mailbox busy"

    world.clock.advance(10)
    second = await dispatcher.tick()
    assert second.outcomes == (Deferred("m1", "acc", t0 + 10, t0 + 30, "451 mailbox busy", 451),)
    assert (await world.record("m1")).attempts == 2

    world.clock.advance(20)
    await dispatcher.tick()
    record = await world.record("m1")
    assert record.status is MessageStatus.ERROR
    assert record.error == "gave up after 3 attempts over 30s: last error 451 mailbox busy"
    assert record.attempts == 3
    assert world.sender.sent == []
    outcomes = [a.outcome for a in await world.messages.attempts("m1")]
    assert outcomes == [AttemptOutcome.TEMPORARY_FAILURE] * 3


async def test_transient_error_then_success(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    dispatcher = world.dispatcher(DispatchConfig(retry=RetryPolicy(base_seconds=60, jitter=0.1)), jitter=lambda: 0.0)
    world.sender.fail_next(TransientSendError("connection reset"))

    first = await dispatcher.tick()
    assert first.outcomes == (Deferred("m1", "acc", world.t0, world.t0 + 54, "connection reset"),)  # 60s - 10%

    world.clock.advance(54)
    await dispatcher.tick()
    record = await world.record("m1")
    assert record.status is MessageStatus.SENT
    assert record.attempts == 2
    assert record.first_attempt_ts == world.t0


async def test_permanent_error_fails_the_message(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"), world.message("m2"))
    world.sender.fail_next(PermanentSendError("no such user", 550))

    summary = await world.dispatcher().tick()

    assert summary.outcomes[0] == Failed("m1", "acc", world.t0, "550 no such user", 550)
    assert world.sent_ids() == ["m2"]
    record = await world.record("m1")
    assert (record.status, record.error, record.error_ts) == (MessageStatus.ERROR, "550 no such user", world.t0)


async def test_poison_message_fails_alone(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"), world.message("poison"), world.message("m3"))
    sender = PoisonSender("poison")

    summary = await world.dispatcher(sender=sender).tick()

    assert sender.sent == ["m1", "m3"]
    assert {o.message_id: type(o) for o in summary.outcomes} == {"m1": Sent, "poison": Failed, "m3": Sent}
    record = await world.record("poison")
    assert record.status is MessageStatus.ERROR
    assert record.error == "internal error: RuntimeError: boom"
    assert (await world.record("m3")).status is MessageStatus.SENT


async def test_claimed_message_without_outcome_waits_for_its_lease(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    t0 = world.t0
    claims = await world.queue.claim_due("acc", t0, 10, t0 + 300)  # a dispatcher that died mid-send
    assert [c.message.id for c in claims] == ["m1"]
    dispatcher = world.dispatcher()

    assert (await dispatcher.tick()).outcomes == ()
    assert await world.queue.claim_due("acc", t0, 10, t0 + 300) == []
    assert await world.queue.next_due_at(t0) == t0 + 300

    world.clock.advance(299)
    assert (await dispatcher.tick()).outcomes == ()

    world.clock.advance(1)
    summary = await dispatcher.tick()
    assert [o.message_id for o in summary.outcomes] == ["m1"]
    assert world.sent_ids() == ["m1"]


async def test_accounts_do_not_share_rate_limits(world: World) -> None:
    await world.add_account("a", limits=RateLimits(per_minute=1))
    await world.add_account("b", limits=RateLimits(per_minute=1))
    await world.enqueue(world.message("a1", "a"), world.message("a2", "a"), world.message("b1", "b"))

    await world.dispatcher().tick()

    assert sorted(world.sent_ids()) == ["a1", "b1"]
    assert world.state.rows["a2"].available_at == world.t0 + 60  # held back until its slot


async def test_concurrent_sends_are_bounded_by_max_connections(world: World) -> None:
    await world.add_account("acc", max_connections=2)
    await world.enqueue(*(world.message(f"m{i}") for i in range(5)))
    sender = SlowSender()

    summary = await world.dispatcher(sender=sender).tick()

    assert sender.peak == 2
    assert sorted(sender.sent) == ["m0", "m1", "m2", "m3", "m4"]
    assert all(isinstance(o, Sent) for o in summary.outcomes)
    assert {row.record.status for row in world.state.rows.values()} == {MessageStatus.SENT}


async def test_single_connection_sends_one_at_a_time_in_priority_order(world: World) -> None:
    await world.add_account("acc", max_connections=1)
    await world.enqueue(world.message("low", priority=Priority.LOW), world.message("high", priority=Priority.HIGH))
    sender = SlowSender()

    await world.dispatcher(sender=sender).tick()

    assert sender.peak == 1
    assert sender.sent == ["high", "low"]


async def test_throttled_account_pauses_without_trying_the_rest(world: World) -> None:
    await world.add_account("acc", max_connections=1)
    await world.add_account("other")
    await world.enqueue(*(world.message(f"m{i}") for i in range(4)), world.message("o1", "other"))
    policy = RetryPolicy(base_seconds=10, jitter=0.0)
    dispatcher = world.dispatcher(DispatchConfig(throttle_seconds=120, retry=policy))
    world.sender.fail_next(TransientSendError("too many connections", 421, throttled=True))
    t0 = world.t0

    summary = await dispatcher.tick()

    by_id = {o.message_id: o for o in summary.outcomes}
    assert by_id["m0"] == Deferred("m0", "acc", t0, t0 + 10, "421 too many connections", 421)
    for mid in ("m1", "m2", "m3"):
        held = by_id[mid]
        assert isinstance(held, Deferred)
        assert (held.until, held.counts_as_attempt) == (t0 + 120, False)
        assert (await world.record(mid)).attempts == 0
    assert world.sent_ids() == ["o1"]  # other accounts are not paused

    world.clock.advance(10)  # m0's retry is due, but the account is still paused
    assert (await dispatcher.tick()).outcomes == ()

    world.clock.set(t0 + 120)
    await dispatcher.tick()
    assert world.sent_ids() == ["o1", "m0", "m1", "m2", "m3"]
    assert (await world.record("m0")).attempts == 2
    assert (await world.record("m1")).attempts == 1


async def test_a_failing_commit_is_retried_and_nothing_is_lost(world: World) -> None:
    """The store refuses the first two commits: outcomes are kept, retried, and all land."""

    class FlakyQueue(type(world.queue)):  # type: ignore[misc]
        failures = 2

        async def record_outcomes(self, outcomes):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise RuntimeError("database is locked")
            await super().record_outcomes(outcomes)

    await world.add_account("acc")
    await world.enqueue(*(world.message(f"m{i}") for i in range(5)))
    flaky = FlakyQueue(world.state)
    service = DispatchService(flaky, world.accounts, world.service_state, world.sender, world.clock, DispatchConfig())
    summary = await service.tick()
    assert sorted(o.message_id for o in summary.outcomes) == [f"m{i}" for i in range(5)]
    assert flaky.failures == 0
    assert {(await world.record(f"m{i}")).status for i in range(5)} == {MessageStatus.SENT}
    assert len(world.sender.sent) == 5  # each sent once


async def test_after_stop_taking_no_new_send_starts(world: World) -> None:
    """Shutdown during a batch: the send in flight finishes and is recorded; the rest is not tried."""

    class StopsAfterFirst(MailSender):
        def __init__(self) -> None:
            self.service: DispatchService | None = None
            self.sent: list[str] = []

        async def send(self, account, message):  # type: ignore[no-untyped-def]
            assert self.service is not None
            self.service.stop_taking()
            self.sent.append(message.id)
            return SendReceipt()

        async def close(self) -> None:
            return None

    await world.add_account("acc", max_connections=1)
    await world.enqueue(*(world.message(f"m{i}") for i in range(5)))
    sender = StopsAfterFirst()
    service = DispatchService(world.queue, world.accounts, world.service_state, sender, world.clock, DispatchConfig())
    sender.service = service
    summary = await service.tick()
    assert sender.sent == ["m0"]
    assert [o.message_id for o in summary.outcomes] == ["m0"]
    assert (await world.record("m0")).status is MessageStatus.SENT
    assert (await world.record("m1")).status is MessageStatus.QUEUED
    assert (await service.tick()).suspended is True


async def test_one_unstorable_outcome_does_not_hold_back_the_others(world: World) -> None:
    """The store refuses whatever concerns m2: after the group commit fails, the rest are committed alone."""

    class RefusesM2(type(world.queue)):  # type: ignore[misc]
        async def record_outcomes(self, outcomes):  # type: ignore[no-untyped-def]
            if any(o.message_id == "m2" for o in outcomes):
                raise ValueError("cannot store this text")
            await super().record_outcomes(outcomes)

    await world.add_account("acc", max_connections=1)
    await world.enqueue(*(world.message(f"m{i}") for i in range(4)))
    queue = RefusesM2(world.state)
    service = DispatchService(queue, world.accounts, world.service_state, world.sender, world.clock, DispatchConfig())
    summary = await service.tick()  # the tick survives: one account's trouble is logged, not raised
    assert summary.outcomes == ()  # m2's account failed this tick as a whole ...
    assert {i: (await world.record(f"m{i}")).status for i in range(4)} == {
        0: MessageStatus.SENT,  # ... but every other outcome was committed
        1: MessageStatus.SENT,
        2: MessageStatus.QUEUED,
        3: MessageStatus.SENT,
    }


def test_server_text_is_made_storable() -> None:
    error = PermanentSendError("550 Empf\udce4nger unbekannt\x00", 550)
    assert error.detail == "550 Empf?nger unbekannt"
    assert str(error).encode("utf-8")


async def test_a_full_window_leaves_the_queue_untouched(world: World) -> None:
    await world.add_account("acc", limits=RateLimits(per_minute=1), batch_size=1)
    await world.enqueue(*(world.message(f"m{i}") for i in range(3)))
    dispatcher = world.dispatcher()
    first = await dispatcher.tick()
    assert world.sent_ids() == ["m0"]
    assert first.more_work is True  # a full batch of one went out
    second = await dispatcher.tick()
    assert second.outcomes == ()
    assert [world.state.rows[m].available_at for m in ("m1", "m2")] == [world.t0, world.t0]  # not even claimed
    assert second.next_due_at == world.t0 + 60  # the loop sleeps until the slot frees
