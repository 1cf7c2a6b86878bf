"""ReportingService: batches until drained, acknowledge only what was delivered unchanged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from unit_support import World

from adapters.memory.report_sink import RecordingReportSink
from core.model import DeliveryReport, MessageStatus, Priority, RateLimits, ReportAck
from core.policies.retry import RetryPolicy
from core.services.dispatch import DispatchConfig
from core.services.reporting import ReportingService, expected_summary
from ports.mail_sender import PermanentSendError, TransientSendError
from ports.report_sink import ReportSink


class RacingSink(RecordingReportSink):
    """Records like the recording sink, then runs `during_delivery` once before acknowledging."""

    def __init__(self, during_delivery: Callable[[], Awaitable[object]]) -> None:
        super().__init__()
        self._during: Callable[[], Awaitable[object]] | None = during_delivery

    async def deliver(self, reports: Sequence[DeliveryReport]) -> ReportAck:
        ack = await super().deliver(reports)
        if self._during is not None:
            during, self._during = self._during, None
            await during()
        return ack


def reporter(world: World, batch_size: int, max_batches: int = 50, sink: ReportSink | None = None) -> ReportingService:
    return ReportingService(world.reports, sink or world.sink, world.clock, batch_size, max_batches)


async def send_all(world: World, count: int) -> list[str]:
    await world.add_account("acc")
    ids = [f"m{i}" for i in range(count)]
    await world.enqueue(*(world.message(mid) for mid in ids))
    await world.dispatcher().tick()
    assert world.sent_ids() == ids
    return ids


async def test_batches_until_drained(world: World) -> None:
    ids = await send_all(world, 5)
    world.clock.advance(5)

    summary = await reporter(world, batch_size=2).tick()

    assert (summary.delivered, summary.batches, summary.failed, summary.more_work) == (5, 3, None, False)
    assert [len(batch) for batch in world.sink.batches] == [2, 2, 1]
    assert [r.id for r in world.sink.reports] == ids
    assert all(r.sent_ts == world.t0 and r.error is None and r.deferred_ts is None for r in world.sink.reports)
    assert await world.reports.pending_reports(10) == []
    assert {(await world.record(mid)).reported_ts for mid in ids} == {world.t0 + 5}

    assert await reporter(world, batch_size=2).tick() == type(summary)()  # nothing left to report
    assert len(world.sink.batches) == 3


async def test_exact_multiple_of_batch_size_is_drained(world: World) -> None:
    await send_all(world, 4)

    summary = await reporter(world, batch_size=2).tick()

    assert (summary.delivered, summary.batches) == (4, 2)
    assert [len(batch) for batch in world.sink.batches] == [2, 2]


async def test_per_tick_batch_cap_leaves_more_work(world: World) -> None:
    await send_all(world, 5)
    service = reporter(world, batch_size=2, max_batches=2)

    first = await service.tick()
    assert (first.delivered, first.batches, first.more_work) == (4, 2, True)

    second = await service.tick()
    assert (second.delivered, second.batches, second.more_work) == (1, 1, False)


async def test_failing_sink_leaves_rows_unreported_until_it_recovers(world: World) -> None:
    ids = await send_all(world, 3)
    service = reporter(world, batch_size=10)
    world.sink.fail_next()

    failed = await service.tick()

    assert failed.failed == "recording sink told to fail"
    assert (failed.delivered, failed.batches) == (0, 0)
    assert world.sink.batches == []
    assert {(await world.record(mid)).reported_ts for mid in ids} == {None}
    assert (await world.messages.counts(world.clock.now())).unreported == 3

    world.clock.advance(30)
    recovered = await service.tick()

    assert (recovered.delivered, recovered.failed) == (3, None)
    assert [r.id for r in world.sink.reports] == ids
    assert {(await world.record(mid)).reported_ts for mid in ids} == {world.t0 + 30}
    assert (await world.messages.counts(world.clock.now())).unreported == 0


async def test_row_changed_during_delivery_is_not_acknowledged(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("flaky"), world.message("ok"))
    dispatcher = world.dispatcher(DispatchConfig(retry=RetryPolicy(base_seconds=10, jitter=0.0)))
    world.sender.fail_next(TransientSendError("try later", 421))
    await dispatcher.tick()  # "flaky" deferred to t0+10, "ok" sent

    async def send_the_deferred_one() -> None:
        world.clock.advance(10)
        await dispatcher.tick()

    sink = RacingSink(send_the_deferred_one)
    service = reporter(world, batch_size=10, sink=sink)

    summary = await service.tick()

    assert summary.delivered == 1  # only "ok": "flaky" changed (now sent) after it was fetched
    [batch] = sink.batches
    assert [(r.id, r.deferred_ts, r.sent_ts) for r in batch] == [
        ("flaky", world.t0 + 10, None),
        ("ok", None, world.t0),
    ]
    assert (await world.record("flaky")).reported_ts is None
    assert (await world.record("ok")).reported_ts == world.t0 + 10

    again = await service.tick()

    assert again.delivered == 1
    assert [(r.id, r.sent_ts, r.deferred_ts) for r in sink.batches[1]] == [("flaky", world.t0 + 10, None)]
    assert await world.reports.pending_reports(10) == []


async def test_deferred_message_is_reported_then_reported_again_when_sent(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1", priority=Priority.HIGH))
    dispatcher = world.dispatcher(DispatchConfig(retry=RetryPolicy(base_seconds=60, jitter=0.0)))
    service = reporter(world, batch_size=10)
    world.sender.fail_next(TransientSendError("greylisted", 450))
    await dispatcher.tick()

    await service.tick()
    [deferred] = world.sink.reports
    assert deferred.id == "m1"
    assert deferred.priority == int(Priority.HIGH)
    assert (deferred.deferred_ts, deferred.sent_ts, deferred.error_ts, deferred.error) == (
        world.t0 + 60,
        None,
        None,
        None,
    )
    assert expected_summary([deferred]) == {"sent": 0, "error": 0, "deferred": 1}

    world.clock.advance(60)
    await dispatcher.tick()
    await service.tick()

    [_, sent] = world.sink.reports
    assert (sent.id, sent.sent_ts, sent.deferred_ts) == ("m1", world.t0 + 60, None)
    assert sent.version > deferred.version
    assert (await world.record("m1")).status is MessageStatus.SENT


async def test_errors_are_reported_and_a_rate_limit_hold_is_not(world: World) -> None:
    await world.add_account("acc", limits=RateLimits(per_minute=2))
    await world.enqueue(world.message("bad"), world.message("good"), world.message("waits"))
    world.sender.fail_next(PermanentSendError("no such user", 550))
    await world.dispatcher().tick()  # "bad" fails, "good" sent, "waits" over the 2/min limit

    await reporter(world, batch_size=10).tick()

    reports = {r.id: r for r in world.sink.reports}
    assert (reports["bad"].error, reports["bad"].error_ts) == ("550 no such user", world.t0)
    assert reports["good"].sent_ts == world.t0
    assert "waits" not in reports  # held back until its slot: no state change to report
    assert expected_summary(world.sink.reports) == {"sent": 1, "error": 1, "deferred": 0}
