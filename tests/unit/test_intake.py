"""IntakeService over the in-memory stores: one bad entry never blocks the others."""

from __future__ import annotations

import dataclasses

import pytest
from unit_support import World

from core.model import MessageStatus, Priority, Rejection
from core.policies.validation import IntakeLimits
from core.services.intake import IntakeService


@pytest.fixture
async def intake(world: World) -> IntakeService:
    await world.add_account("acc")
    return IntakeService(world.messages, world.accounts, world.clock, IntakeLimits())


async def test_good_and_bad_entries_in_one_batch(world: World, intake: IntakeService) -> None:
    batch = [
        world.message("good-1"),
        world.message("bad-to", to=("not-an-address",)),
        world.message("good-2", priority=Priority.LOW),
        world.message("bad-subject", subject="a\r\nb"),
    ]

    result = await intake.add(batch)

    assert result.queued == 2
    assert result.rejected == (
        Rejection("bad-to", "malformed to address 'not-an-address': missing local part or @"),
        Rejection("bad-subject", "subject contains CR, LF or NUL"),
    )
    assert set(world.state.rows) == {"good-1", "good-2"}
    record = await world.record("good-2")
    assert record.status is MessageStatus.QUEUED
    assert record.created_ts == world.t0
    assert record.message.priority is Priority.LOW


async def test_unknown_account_is_rejected(world: World, intake: IntakeService) -> None:
    result = await intake.add([world.message("m1", account_id="ghost"), world.message("m2")])

    assert result.queued == 1
    assert result.rejected == (Rejection("m1", "unknown account 'ghost'"),)
    assert list(world.state.rows) == ["m2"]


async def test_missing_id_is_rejected_without_an_id(world: World, intake: IntakeService) -> None:
    result = await intake.add([world.message("")])

    assert result.queued == 0
    assert result.rejected == (Rejection(None, "missing id"),)


async def test_duplicate_in_batch_keeps_the_first(world: World, intake: IntakeService) -> None:
    result = await intake.add([world.message("m1", subject="first"), world.message("m1", subject="second")])

    assert result.queued == 1
    assert result.rejected == (Rejection("m1", "duplicate id: repeated in this batch"),)
    assert (await world.record("m1")).message.subject == "first"


async def test_reposted_batch_queues_nothing(world: World, intake: IntakeService) -> None:
    batch = [world.message("m1"), world.message("m2", priority=Priority.IMMEDIATE)]
    first = await intake.add(batch)
    world.clock.advance(10)

    again = await intake.add([world.message("m1", subject="changed"), world.message("m2")])

    assert first.queued == 2
    assert again.queued == 0
    assert again.has_immediate is False
    assert again.rejected == (
        Rejection("m1", "duplicate id: a message with this id is already stored"),
        Rejection("m2", "duplicate id: a message with this id is already stored"),
    )
    stored = await world.record("m1")
    assert stored.message.subject == ""
    assert stored.created_ts == world.t0


async def test_partly_stored_batch_queues_only_new_ids(world: World, intake: IntakeService) -> None:
    await intake.add([world.message("old")])

    result = await intake.add([world.message("new"), world.message("old")])

    assert result.queued == 1
    assert result.rejected == (Rejection("old", "duplicate id: a message with this id is already stored"),)
    assert set(world.state.rows) == {"old", "new"}


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        ((Priority.LOW, Priority.MEDIUM), False),
        ((Priority.LOW, Priority.IMMEDIATE), True),
        ((Priority.HIGH,), False),
        ((), False),
    ],
)
async def test_has_immediate(
    world: World, intake: IntakeService, priorities: tuple[Priority, ...], expected: bool
) -> None:
    batch = [world.message(f"m{i}", priority=p) for i, p in enumerate(priorities)]

    result = await intake.add(batch)

    assert result.has_immediate is expected
    assert result.queued == len(priorities)


async def test_rejected_immediate_does_not_count(world: World, intake: IntakeService) -> None:
    result = await intake.add([world.message("m1", priority=Priority.IMMEDIATE, to=())])

    assert result.has_immediate is False
    assert result.queued == 0


async def test_caller_rejections_pass_through(world: World, intake: IntakeService) -> None:
    upstream = Rejection("e1", "priority: bad priority 'urgent'")
    anonymous = Rejection(None, "entry must be a JSON object")

    result = await intake.add([upstream, world.message("m1"), anonymous])

    assert result.queued == 1
    assert result.rejected == (upstream, anonymous)
    assert list(world.state.rows) == ["m1"]


async def test_intake_gives_each_message_a_stored_message_id(world: World) -> None:
    await world.add_account("acc")
    service = IntakeService(world.messages, world.accounts, world.clock, IntakeLimits())
    given = dataclasses.replace(world.message("m2"), message_id="<mine@example.com>")
    await service.add([world.message("m1"), given])
    assert (await world.record("m2")).message.message_id == "<mine@example.com>"
    assigned = (await world.record("m1")).message.message_id
    assert assigned is not None and assigned.startswith("<") and assigned.endswith("@example.com>")
