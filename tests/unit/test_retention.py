"""RetentionService: purge finished rows past the window, never queued ones; fail orphans."""

from __future__ import annotations

from unit_support import World

from core.model import MessageStatus, Priority
from core.services.reporting import ReportingService
from core.services.retention import RetentionService, RetentionSummary
from ports.mail_sender import PermanentSendError

HOUR = 3600.0
DAY = 86400.0


def retention(world: World, reporting_enabled: bool = True, retention_seconds: float = HOUR) -> RetentionService:
    return RetentionService(world.reports, world.queue, world.clock, retention_seconds, reporting_enabled)


def reporting(world: World) -> ReportingService:
    return ReportingService(world.reports, world.sink, world.clock, batch_size=100)


async def test_purges_only_reported_finished_rows_past_retention(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(
        world.message("failed", priority=Priority.IMMEDIATE),
        world.message("sent"),
        world.message("queued", deferred_ts=world.t0 + 30 * DAY),
    )
    world.sender.fail_next(PermanentSendError("rejected", 554))
    dispatcher = world.dispatcher()
    await dispatcher.tick()
    await reporting(world).tick()  # "failed" and "sent" reported at t0
    world.clock.advance(10)
    await world.enqueue(world.message("unreported"))
    await dispatcher.tick()  # sent at t0+10, not reported
    service = retention(world)

    world.clock.set(world.t0 + HOUR)  # cutoff == t0: rows finished at t0 are not older than it
    assert await service.tick() == RetentionSummary(purged=0, orphans_failed=0)

    world.clock.set(world.t0 + HOUR + 11)
    summary = await service.tick()

    assert summary == RetentionSummary(purged=2, orphans_failed=0)
    assert set(world.state.rows) == {"queued", "unreported"}
    assert {a.message_id for a in world.state.attempts} == {"unreported"}
    assert await world.messages.get("sent") is None


async def test_recently_reported_row_waits_for_its_report_to_age(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    await world.dispatcher().tick()  # finished at t0
    world.clock.advance(2 * HOUR)
    await reporting(world).tick()  # reported only at t0 + 2h
    service = retention(world)

    world.clock.advance(HOUR)
    assert (await service.tick()).purged == 0
    assert "m1" in world.state.rows

    world.clock.advance(1)
    assert (await service.tick()).purged == 1
    assert world.state.rows == {}


async def test_row_changed_since_its_report_is_kept(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    await world.dispatcher().tick()
    await reporting(world).tick()
    world.state.rows["m1"].version += 1  # a newer state the receiver has not acknowledged yet
    world.clock.advance(2 * HOUR)

    assert (await retention(world).tick()).purged == 0
    assert "m1" in world.state.rows


async def test_reporting_disabled_purges_by_finish_time(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(
        world.message("failed"), world.message("sent"), world.message("queued", deferred_ts=world.t0 + DAY)
    )
    world.sender.fail_next(PermanentSendError("nope", 550))  # the first send, "failed"
    await world.dispatcher().tick()
    assert world.sent_ids() == ["sent"]
    service = retention(world, reporting_enabled=False)

    world.clock.advance(HOUR)
    assert (await service.tick()).purged == 0

    world.clock.advance(1)
    assert (await service.tick()).purged == 2
    assert set(world.state.rows) == {"queued"}
    assert world.sink.batches == []


async def test_never_purges_queued_rows(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("far-future", deferred_ts=world.t0 + 365 * DAY), world.message("leased"))
    await world.queue.claim_due("acc", world.t0, 10, world.t0 + 300)
    world.clock.advance(30 * DAY)

    for reporting_enabled in (True, False):
        assert (await retention(world, reporting_enabled).tick()).purged == 0
    assert {mid: row.record.status for mid, row in world.state.rows.items()} == {
        "far-future": MessageStatus.QUEUED,
        "leased": MessageStatus.QUEUED,
    }


async def test_orphaned_queued_messages_end_as_errors(world: World) -> None:
    await world.add_account("gone")
    await world.add_account("kept")
    await world.enqueue(world.message("o1", "gone"), world.message("o2", "gone"), world.message("k1", "kept"))
    del world.state.accounts["gone"]  # removed behind the service's back
    world.clock.advance(5)
    service = retention(world)

    summary = await service.tick()

    assert summary.orphans_failed == 2
    for mid in ("o1", "o2"):
        record = await world.record(mid)
        assert (record.status, record.error, record.error_ts) == (
            MessageStatus.ERROR,
            "account 'gone' no longer exists",
            world.t0 + 5,
        )
    assert (await world.record("k1")).status is MessageStatus.QUEUED
    assert [r.id for r in await world.reports.pending_reports(10)] == ["o1", "o2"]
    assert (await service.tick()).orphans_failed == 0


async def test_prunes_send_history_older_than_a_day(world: World) -> None:
    await world.add_account("acc")
    await world.enqueue(world.message("m1"))
    await world.dispatcher().tick()
    service = retention(world, retention_seconds=365 * DAY)

    world.clock.advance(DAY)
    await service.tick()
    assert world.state.send_log == [("acc", world.t0)]

    world.clock.advance(1)
    await service.tick()
    assert world.state.send_log == []
