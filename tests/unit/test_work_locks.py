"""WorkLocks: a key held by one holder is refused to another until released; dispatch skips a held account."""

from __future__ import annotations

from unit_support import World

from adapters.memory.work_locks import InProcessWorkLocks
from core.services.dispatch import DispatchConfig, DispatchService


async def test_second_holder_is_refused_until_release() -> None:
    locks = InProcessWorkLocks()
    async with locks.hold("k") as first:
        assert first is True
        async with locks.hold("k") as second:
            assert second is False
        async with locks.hold("other") as other:
            assert other is True
    async with locks.hold("k") as again:
        assert again is True


async def test_dispatch_leaves_an_account_another_holder_is_sending(world: World) -> None:
    locks = InProcessWorkLocks()
    await world.add_account("accA")
    await world.enqueue(world.message("M1", account_id="accA"))
    service = DispatchService(
        world.queue, world.accounts, world.service_state, world.sender, world.clock, DispatchConfig(), locks=locks
    )
    async with locks.hold("dispatch:accA"):
        summary = await service.tick()
    assert summary.outcomes == ()
    assert world.sender.sent == []
    summary = await service.tick()
    assert [o.message_id for o in summary.outcomes] == ["M1"]
