"""Dispatch skips an account whose WorkLock another holder has (the locks themselves: contracts suite)."""

from __future__ import annotations

from unit_support import World

from adapters.memory.work_locks import InProcessWorkLocks
from core.services.dispatch import DispatchConfig, DispatchService


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
